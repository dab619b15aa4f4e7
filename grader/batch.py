"""Grade a whole class: `make batch SUBMISSIONS=<dir> OUT=<dir>` (docs/batch.md).

    run_batch(...)           the driver: entries, resume, JOBS workers, gradebook.csv, junit.xml
    grade_submission(...)    the worker: one student's labs, graded as `make lab-<lab>` grades them

Each student is graded in a worker process of its own (`python3 -m grader
submission ...`): the grader is a child subreaper whose runner kills every child
of its process after each run, so two students never share a process, and a
crash or a hang of one (an outer time limit per student) only costs that
student's result, which then says what happened and scores 0 for what was not
graded. Results are written as they come, atomically; a later run of the same
command grades only what is missing (FORCE=1 regrades everyone).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import inspect
import json
import os
import random
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from . import env as envmod
from .build import BUILD_TIMEOUT, build_labs, library_files, make_env
from .checks import Verdict, fmt
from .gradebook import Row, gradebook_csv, junit_xml, summary_table
from .grading import LabResult, grade_lab
from .report import log_text, points
from .results import results_document, write_atomic, write_results
from .spec import Lab
from .submissions import (Entry, Prepared, find_entries, load_prepared, prepare)

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
UNSAFE_WARNING = ("graded WITHOUT a sandbox (--unsafe / UNSAFE=1): the submission's code ran "
                  "with the grader's own rights")


class BatchError(Exception):
    """Bad input or a missing tool: the batch cannot start. The message says what to do."""


class SlotBusy(Exception):
    """Another grader holds this sandbox slot (its uid): the driver retries with another."""


SLOT_BUSY = 75          # a worker's exit status when its slot is taken (EX_TEMPFAIL)


class _Stop(Exception):
    """SIGTERM or SIGHUP: stop like Ctrl-C, keeping every finished result."""


# ---- identities: the grader, the seeds ------------------------------------------------

def grader_id(root: Path, labs: list[Lab]) -> dict:
    """What must not change for a finished result to be kept: the grader's version,
    the labs graded and a digest of their checks and of the course's common/ library."""
    h = hashlib.sha256()
    for lab in labs:
        h.update(lab.name.encode() + b"\0" + (lab.dir / "lab.toml").read_bytes() + b"\0")
    common = Path(root) / "common"
    for p in sorted(common.glob("*.[ch]")) if common.is_dir() else []:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return {"version": __version__, "course": h.hexdigest()[:16], "labs": [lab.name for lab in labs]}


def student_seed(batch_seed: int, student: str) -> int:
    """Each student's parameters depend only on the batch seed and their name."""
    return random.Random(f"{batch_seed}:{student}").randrange(1_000_000)


# ---- one student's results.json ---------------------------------------------------

def placeholder(lab: Lab, seed: int, message: str, error: str) -> LabResult:
    """A lab that was not run: every check fails with this message."""
    res = LabResult(lab, seed, {}, None, error=error)
    res.verdicts = [Verdict(lab.name, c, "fail", 0.0, message=message) for c in lab.checks]
    return res


def _student_output(doc: dict) -> str:
    """The text a student reads on Gradescope: hidden checks are counted nowhere in it."""
    b = doc["extra_data"]["batch"]
    hidden = sum(1 for t in doc["tests"] if t["visibility"] == "hidden")
    lines = []
    if b.get("refused"):
        lines.append(f"Your submission was refused: {b['refused']}. Nothing was graded.")
    vis = [t for t in doc["tests"] if t["visibility"] != "hidden"]
    score = sum(t["score"] for t in vis)
    max_score = sum(t["max_score"] for t in vis)
    head = f"memlab {__version__}: {fmt(score)}/{fmt(max_score)} points"
    if hidden:
        head += " on the visible checks (hidden checks are graded too, and not shown here)"
    lines.append(head)
    for lab, entry in doc["extra_data"]["labs"].items():
        lt = [t for t in vis if t["extra_data"]["lab"] == lab]
        s = sum(t["score"] for t in lt)
        m = sum(t["max_score"] for t in lt)
        note = entry.get("error") or ""
        if b.get("refused") and note == "refused":
            note = ""
        lines.append(f"{lab}: {fmt(s)}/{fmt(m)}" + (f" ({note})" if note else ""))
    for n in b.get("notes", []):
        lines.append(f"Note: {n}")
    if b.get("error"):
        lines.append(f"The grading did not finish: {b['error']}")
    return "\n".join(lines)


def submission_document(results: list[LabResult], kinds: dict, prep: Prepared, seed: int,
                        elapsed: float, meta: dict) -> dict:
    """results_document() for one student, with what batch grading adds: the submission
    (digest, files), the batch (grader id, seeds, complete or not), synthetic verdicts
    tagged (extra_data.kind: not_submitted, refused, bad_file, pending, error)."""
    batch = {
        "student": prep.student, "entry": prep.entry, "digest": prep.digest,
        "files": prep.files, "sha256": prep.sha256, "lab_problems": prep.problems,
        "refused": prep.refused, "notes": list(prep.notes), "seed": seed,
        **meta,
    }
    extra = {"batch": batch}
    if meta.get("unsafe"):
        extra["unsafe"] = True
        extra["warnings"] = [UNSAFE_WARNING]
    doc = results_document(results, _facts(), seed, elapsed, extra=extra)
    for t in doc["tests"]:
        kind = kinds.get(t["extra_data"]["lab"])
        if kind:
            t["extra_data"]["kind"] = kind
            if kind in ("pending", "error"):
                t["extra_data"]["verdict"] = kind
    doc["output"] = _student_output(doc)
    return doc


_FACTS: dict = {}


def _facts() -> dict:
    """The machine's facts, probed once per process (results.json is rewritten often)."""
    if not _FACTS:
        _FACTS.update(envmod.facts())
    return _FACTS


def mark_failed(doc: dict, reason: str) -> dict:
    """A worker died or hung: its partial results.json keeps the labs it finished; the
    labs it had not finished score 0 and say why."""
    for t in doc["tests"]:
        x = t["extra_data"]
        if x.get("kind") == "pending":
            x["kind"] = x["verdict"] = "error"
            x["message"] = f"the grader could not finish this lab: {reason}"
            t["output"] = f"FAILED: {t['name'].split(': ', 1)[-1]}. {x['message']}."
            doc["extra_data"]["labs"][x["lab"]]["error"] = "grader error"
    doc["extra_data"]["batch"]["error"] = reason
    doc["extra_data"]["batch"]["complete"] = False
    doc["output"] = _student_output(doc)
    return doc


def _doc_matches(doc: dict, prep: Prepared, meta: dict) -> bool:
    b = doc.get("extra_data", {}).get("batch", {}) if isinstance(doc, dict) else {}
    return (b.get("digest") == prep.digest and b.get("grader") == meta["grader"]
            and b.get("seed") == meta["seed"])


def is_done(doc, prep: Prepared, meta: dict) -> bool:
    """A finished result for exactly this submission, grader and seed: kept on resume."""
    b = doc.get("extra_data", {}).get("batch", {}) if isinstance(doc, dict) else {}
    return _doc_matches(doc, prep, meta) and b.get("complete") is True and not b.get("error")


def is_final(doc, prep: Prepared, meta: dict) -> bool:
    """Done, or failed for good in this run (it goes into the gradebook)."""
    b = doc.get("extra_data", {}).get("batch", {}) if isinstance(doc, dict) else {}
    return _doc_matches(doc, prep, meta) and (b.get("complete") is True or bool(b.get("error")))


def read_doc(path: Path):
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("tests"), list) \
        and isinstance(doc.get("extra_data"), dict) else None


def autolab_line(doc: dict) -> str:
    """Autolab's last line: {"scores": {"<lab>": points, ...}}."""
    labs = doc["extra_data"]["labs"]
    return json.dumps({"scores": {lab: e["score"] for lab, e in labs.items()}}, sort_keys=False)


# ---- the worker: one student ----------------------------------------------------

def _die_with_parent(parent: int | None):
    """If the driver dies (even SIGKILL), this worker dies too (PR_SET_PDEATHSIG)."""
    if not parent:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != parent:
        os._exit(3)


def open_sandbox(slot: int | None, unsafe: bool, stack: contextlib.ExitStack):
    """The sandbox for this slot, or None with --unsafe; BatchError when there is none."""
    if unsafe:
        return None
    try:
        from . import sandbox as sandboxmod
    except ImportError as e:
        raise BatchError(
            f"no sandbox: this grader has no grader/sandbox.py ({e}). Grading students' code "
            "needs it; to grade without one on a machine you can afford to lose, add "
            "--unsafe (make batch ... UNSAFE=1)") from None
    ok, reason, fix = sandboxmod.available()
    if not ok:
        raise BatchError(f"the sandbox cannot run here: {reason}" + (f" (fix: {fix})" if fix else "")
                         + "; or grade without it: --unsafe (UNSAFE=1)")
    if "sandbox" not in inspect.signature(grade_lab).parameters:
        raise BatchError("grade_lab() takes no sandbox yet in this grader; use --unsafe (UNSAFE=1)")
    # no slot given (one student graded by hand, the Gradescope autograder): the first free one
    for n in ([slot] if slot is not None else range(sandboxmod.MAX_SLOTS)):
        try:
            sb = sandboxmod.Sandbox(n)
            break
        except sandboxmod.SandboxError as e:
            taken = "in use" in str(e) or (slot is None and "belongs to" in str(e))
            if not taken:
                raise BatchError(f"the sandbox could not be set up: {e}") from None
            if slot is not None or n == sandboxmod.MAX_SLOTS - 1:
                raise SlotBusy(str(e)) from None
    if hasattr(sb, "__enter__"):
        sb = stack.enter_context(sb)
    elif hasattr(sb, "close"):
        stack.callback(sb.close)
    return sb


def seed_build(build: Path, common_build: Path | None):
    """A per-student build folder that already holds the course's compiled common/
    (hard links: make sees them up to date and only compiles the student's lab)."""
    build.mkdir(parents=True, exist_ok=True)
    if not common_build:
        return
    common_build = Path(common_build)
    for p in library_files(common_build):
        dest = build / p.relative_to(common_build)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            continue
        try:
            os.link(p, dest)
        except OSError:
            shutil.copy2(p, dest)


def grade_submission(root: Path, labs: list[Lab], out: Path, seed: int, prep: Prepared, *,
                     work: Path, common_build: Path | None = None, slot: int | None = None,
                     unsafe: bool = False, meta: dict | None = None,
                     say=print) -> dict:
    """Grade the labs of one prepared submission; write out/results.json after every lab
    (a lab not graded yet is 'pending' in it) and out/<lab>.log. Returns the document."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("grader", grader_id(root, labs))
    meta.update(seed=seed, unsafe=unsafe, slot=slot, complete=False, error="")
    t0 = time.monotonic()
    kinds: dict = {}
    results: list[LabResult] = []
    errors: list[str] = []

    def doc_now() -> dict:
        done = {r.lab.name for r in results}
        pend = [placeholder(lab, seed, "not graded yet (the grader stopped before this lab)",
                            "not graded") for lab in labs if lab.name not in done]
        now = {**kinds, **{p.lab.name: "pending" for p in pend}}     # a graded lab is never pending
        return submission_document(results + pend, now, prep, seed, time.monotonic() - t0, meta)

    def header(lab: Lab) -> str:
        where = prep.files.get(lab.name)
        return (f"memlab batch: student {prep.student} (entry {prep.entry}), lab {lab.name}\n"
                + (f"file: {where} (sha256 {prep.sha256[lab.name]})\n" if where else "")
                + (f"WARNING: {UNSAFE_WARNING}\n" if unsafe else "") + "\n")

    if prep.refused:
        for lab in labs:
            results.append(placeholder(lab, seed, f"the submission was refused: {prep.refused}",
                                       "refused"))
            kinds[lab.name] = "refused"
        meta["complete"] = True
        doc = submission_document(results, kinds, prep, seed, time.monotonic() - t0, meta)
        for lab in labs:
            write_atomic(out / f"{lab.name}.log", header(lab) + f"REFUSED: {prep.refused}\n")
        write_results(out / "results.json", doc)
        say(f"{prep.student}: refused: {prep.refused}")
        return doc

    with contextlib.ExitStack() as stack:
        sandbox = open_sandbox(slot, unsafe, stack)     # before anything is written
        if sandbox is not None and hasattr(sandbox, "describe"):
            meta["sandbox"] = sandbox.describe()
            meta["slot"] = getattr(sandbox, "slot", slot)
        write_results(out / "results.json", doc_now())
        build = work / "build"
        compiled: dict = {}
        to_build = [lab.name for lab in labs if lab.name in prep.files and lab.name not in prep.problems]
        if to_build:
            seed_build(build, common_build)
        if to_build and sandbox is not None:
            # all of the student's labs in one sandboxed make (see Sandbox.build_many)
            try:
                compiled = build_labs(root, to_build, build, Path(prep.src), sandbox=sandbox,
                                      ldlibs={lab.name: lab.ldlibs for lab in labs})
            except Exception as e:  # noqa: BLE001 - then each lab is compiled on its own
                say(f"  compiling the labs together failed ({type(e).__name__}: {e}): "
                    "compiling each on its own")
        for lab in labs:
            t = time.monotonic()
            if lab.name in prep.problems:
                res = placeholder(lab, seed, f"cannot grade the file: {prep.problems[lab.name]}",
                                  "bad file")
                kinds[lab.name] = "bad_file"
            elif lab.name not in prep.files:
                res = placeholder(lab, seed, f"not submitted (no {lab.name}/{lab.name}.c or "
                                  f"labs/{lab.name}/{lab.name}.c in {prep.entry})", "not submitted")
                kinds[lab.name] = "not_submitted"
            else:
                try:
                    res = grade_lab(lab, root, seed, build_dir=build, labs_src=Path(prep.src),
                                    build=compiled.get(lab.name),
                                    **({"sandbox": sandbox} if sandbox is not None else {}))
                except Exception as e:  # noqa: BLE001 - one lab's grader failure is that lab's 0
                    why = f"{type(e).__name__}: {e}"
                    res = placeholder(lab, seed, f"the grader failed on this lab: {why}", "grader error")
                    kinds[lab.name] = "error"
                    errors.append(f"{lab.name}: {why}")
            results.append(res)
            write_atomic(out / f"{lab.name}.log", header(lab) + log_text(res))
            write_results(out / "results.json", doc_now())
            say(f"  {lab.name:<12} {points(res.score)}/{points(res.max_score)}"
                + (f"  ({res.error})" if res.error else "") + f"  [{time.monotonic() - t:.1f} s]")
    meta["complete"] = True
    meta["error"] = "; ".join(errors)
    doc = submission_document(results, kinds, prep, seed, time.monotonic() - t0, meta)
    write_results(out / "results.json", doc)
    return doc


def cmd_submission(args) -> int:
    """python3 -m grader submission: one student (see docs/batch.md)."""
    from .cli import _labs
    from .runner import set_subreaper as _subreaper
    _die_with_parent(args.parent)
    if args.cpus:
        try:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        except (ValueError, OSError) as e:      # grade anyway, on every CPU
            print(f"memlab submission: cannot keep to CPUs {args.cpus}: {e}", file=sys.stderr)
    _subreaper()          # from the start: orphans of a compilation come back here, not to the driver
    if args.machine:        # what the driver probed once for every worker
        try:
            envmod.use_snapshot(json.loads(Path(args.machine).read_text()))
        except (OSError, ValueError) as e:
            print(f"memlab submission: probing the machine again ({args.machine}: {e})",
                  file=sys.stderr)
    if args.sandbox_checked and not args.unsafe:
        from . import sandbox as sandboxmod
        sandboxmod.checked_by_parent()
    root = Path(args.root)
    labs = _labs(root, args.labs.split() if args.labs else None)
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    out = Path(args.out)
    say = (lambda s: None) if args.autolab and args.quiet else print
    tmp = None
    try:
        if args.prepared:
            work = Path(args.prepared)
            prep = load_prepared(work)
        else:
            if not args.src:
                raise BatchError("give --src <folder or archive> (or --prepared <work dir>)")
            src = Path(args.src)
            if not src.exists():
                raise BatchError(f"no such submission: {src}")
            work = Path(args.work) if args.work else Path(tmp := tempfile.mkdtemp(prefix="memlab-sub-"))
            prep = prepare(src, [lab.name for lab in labs], work)
        meta = json.loads(args.meta) if args.meta else {}
        if not args.quiet:
            print(f"memlab {__version__}: grading {prep.student} ({prep.entry}), seed {seed}"
                  + ("  [UNSAFE: no sandbox]" if args.unsafe else ""), flush=True)
        doc = grade_submission(root, labs, out, seed, prep, work=work,
                               common_build=Path(args.common_build) if args.common_build else None,
                               slot=args.slot, unsafe=args.unsafe, meta=meta, say=say)
    except SlotBusy as e:
        print(f"memlab submission: {e}", file=sys.stderr)
        return SLOT_BUSY
    except BatchError as e:
        print(f"memlab submission: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.quiet:
        print(f"Score: {points(doc['score'])}/{points(doc['extra_data']['max_score'])}  "
              f"(results: {out / 'results.json'})", flush=True)
    if args.autolab:
        line = autolab_line(doc)
        write_atomic(out / "autolab.json", line + "\n")
        print(line, flush=True)
    return 0


# ---- the driver --------------------------------------------------------------------

@dataclass
class Student:
    entry: Entry
    prep: Prepared
    seed: int
    work: Path
    out: Path
    doc: dict | None = None
    status: str = "todo"          # todo, kept, running, done, failed
    seconds: float = 0.0


@dataclass
class _Worker:
    student: Student
    proc: subprocess.Popen
    slot: int
    started: float
    deadline: float
    log: object = None
    cpus: list[int] | None = None
    pidfd: int | None = None      # readable when the worker ends


@dataclass
class Options:
    jobs: int = 1
    force: bool = False
    unsafe: bool = False
    seed: int | None = None
    only: list[str] = field(default_factory=list)
    student_timeout: float | None = None
    autolab: bool = False
    pin: bool = True


def student_time_limit(labs: list[Lab]) -> float:
    """The outer limit for one student: every build and every run at its own limit, and room."""
    return sum(BUILD_TIMEOUT + lab.timeout * max(len(lab.runs), 1) + 15 for lab in labs) + 30


def _check_tools():
    cc = (os.environ.get("CC") or "gcc").split()[0]
    missing = [t for t in ("make", cc, "ar") if not shutil.which(t)]
    if missing:
        raise BatchError(f"missing tool(s): {', '.join(missing)} (install: sudo apt-get install -y "
                         "make gcc binutils, or run `make deps`)")


def _worker_env(pycache: Path | None) -> dict:
    """The environment of a process that runs this grader package: it imports it from
    here, and with pycache, reads and writes its bytecode there (precompile())."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def precompile(prefix: Path) -> Path | None:
    """Bytecode for the workers under prefix (PYTHONPYCACHEPREFIX): the grader's modules
    and the standard library's that they import, compiled once by importing them. Without
    it, where PYTHONDONTWRITEBYTECODE is set or the package folder is read-only, every
    worker compiles them again (0.25 s per student here). None if that fails."""
    try:
        p = subprocess.run([sys.executable, "-c", "import grader.cli, grader.batch, grader.grading, "
                            "grader.sandbox, grader.runner, grader.procfs, grader.functions"],
                           cwd=str(PACKAGE_PARENT), env=_worker_env(prefix), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if p.returncode == 0 else None


def _features_of(labs: list[Lab]) -> list[str]:
    """The features the workers will ask about for these labs (probed once, by the driver)."""
    names = {"strace", "strace_seccomp"}
    for lab in labs:
        for run in lab.runs.values():
            names.update(run.requires)
        for check in lab.checks:
            names.update(check.requires)
    return sorted(n for n in names if n in envmod.KNOWN_FEATURES)


def _build_common(root: Path, build: Path) -> None:
    """The course's common/ library, compiled once for the whole batch: copied from the
    project's own build/ when make finds that up to date (or brings it up to date: the
    next batch needs no compiling), else compiled into `build`."""
    build.mkdir(parents=True, exist_ok=True)
    own = root / "build"
    try:
        p = subprocess.run(["make", "--no-print-directory", "-C", str(root), f"BUILD={own}",
                            str(own / "libmemlab.a")], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=make_env(),
                           timeout=BUILD_TIMEOUT * 2)
        if p.returncode == 0:
            for f in library_files(own):
                dest = build / f.relative_to(own)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)           # with its time: make sees it up to date
            return
    except (OSError, subprocess.SubprocessError):
        pass                                    # a read-only project: compiled below
    target = build / "libmemlab.a"
    p = subprocess.run(["make", "--no-print-directory", "-C", str(root), f"BUILD={build}", str(target)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=make_env(), timeout=BUILD_TIMEOUT * 2)
    if p.returncode != 0 or not target.exists():
        tail = "\n".join(p.stdout.decode("utf-8", "replace").strip().splitlines()[-15:])
        raise BatchError(f"the course's common/ library does not compile, so nothing can be "
                         f"graded:\n{tail}")


class _Display:
    """Progress: one line rewritten in place on a terminal, plain lines otherwise."""

    def __init__(self, stream, total: int, jobs: int):
        self.stream, self.total, self.jobs = stream, total, jobs
        self.tty = stream.isatty()
        self.done = 0
        self.failures = 0
        self.t0 = time.monotonic()
        self.shown = False
        self.last = 0.0

    def _clear(self):
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
            self.shown = False

    def line(self, text: str):
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self.progress(force=True)

    def eta(self) -> str:
        if not self.done:
            return "?"
        left = (time.monotonic() - self.t0) / self.done * (self.total - self.done)
        return f"{int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f"{left:.0f}s"

    def counts(self) -> str:
        return f"ETA {self.eta()}, failures {self.failures}"

    def status(self, running: list[str]) -> str:
        pct = 100 * self.done // self.total if self.total else 100
        run = ", ".join(running[:3]) + (", ..." if len(running) > 3 else "")
        return (f"[{self.done}/{self.total}] {pct}%  ETA {self.eta()}  failures {self.failures}"
                + (f"  grading: {run}" if run else ""))

    def progress(self, running: list[str] | None = None, force: bool = False):
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        if running is not None:
            self._running = running
        text = self.status(getattr(self, "_running", []))
        self.stream.write("\r\033[K" + text[:max(shutil.get_terminal_size().columns - 1, 20)])
        self.stream.flush()
        self.shown = True

    def finish(self):
        self._clear()
        self.stream.flush()


def _on_signal(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def run_batch(root: Path, labs: list[Lab], submissions: Path, out: Path, opts: Options,
              stream=sys.stdout) -> int:
    root, submissions, out = Path(root).resolve(), Path(submissions), Path(out)
    if not submissions.is_dir():
        raise BatchError(f"SUBMISSIONS: {submissions} is not a folder"
                         + ("" if submissions.exists() else " (it does not exist)"))
    submissions = submissions.resolve()
    out = out.resolve()
    if out == submissions or out.is_relative_to(submissions) or submissions.is_relative_to(out):
        raise BatchError(f"OUT ({out}) and SUBMISSIONS ({submissions}) must be separate folders, "
                         "neither inside the other")
    if opts.jobs < 1:
        raise BatchError(f"JOBS must be at least 1 (got {opts.jobs})")
    _check_tools()
    if not opts.unsafe:
        try:
            from . import sandbox as sandboxmod
        except ImportError:
            raise BatchError(
                "no sandbox: this grader has no grader/sandbox.py, and students' code must "
                "not run with the grader's rights. To grade without one anyway (a machine "
                "you can afford to lose): make batch ... UNSAFE=1 (--unsafe)") from None
        ok, reason, fix = sandboxmod.available()
        if not ok:
            raise BatchError(f"the sandbox cannot run here: {reason}" + (f" (fix: {fix})" if fix else "")
                             + ". To grade without it anyway: UNSAFE=1 (--unsafe)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".work").mkdir(exist_ok=True)
    except OSError as e:
        raise BatchError(f"OUT: cannot create {out}: {e.strerror}") from None
    lock = open(out / ".work" / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BatchError(f"another batch is writing into {out}; wait for it or stop it") from None
    try:
        return _run(root, labs, submissions, out, opts, stream)
    finally:
        lock.close()


def _run(root: Path, labs: list[Lab], submissions: Path, out: Path, opts: Options, stream) -> int:
    say = lambda s="": (stream.write(s + "\n"), stream.flush())  # noqa: E731
    names = [lab.name for lab in labs]
    gid = grader_id(root, labs)
    state_path = out / "batch.json"
    state = read_doc_any(state_path)
    if opts.seed is not None:
        batch_seed, seed_from = opts.seed, "given"
    elif isinstance(state.get("seed"), int):
        batch_seed, seed_from = state["seed"], f"from {state_path.name}, as before"
    else:
        batch_seed, seed_from = secrets.randbelow(1_000_000), "new"
    write_atomic(state_path, json.dumps({"seed": batch_seed, "grader": gid,
                                         "submissions": str(submissions)}, indent=2) + "\n")

    entries = find_entries(submissions)
    wanted = set(opts.only)
    if wanted:
        unknown = wanted - {e.student for e in entries} - {e.name for e in entries}
        if unknown:
            raise BatchError(f"no such student in {submissions}: {', '.join(sorted(unknown))}")
    if not entries:
        raise BatchError(f"SUBMISSIONS: {submissions} holds no entry (a folder, .tar.gz, .tgz "
                         "or .zip per student)")
    say(f"memlab {__version__}: batch grading {len(entries)} entries of {submissions}")
    say(f"  labs: {' '.join(names)}; seed {batch_seed} ({seed_from}; repeat with SEED={batch_seed}); "
        f"JOBS={opts.jobs}")
    if opts.unsafe:
        say(f"  WARNING: {UNSAFE_WARNING}; every results.json says so (\"unsafe\": true)")

    students: list[Student] = []
    for e in entries:
        work = out / ".work" / e.student
        prep = prepare(e.path, names, work, student=e.student,
                       kind=None if e.kind == "other" else e.kind, problem=e.problem)
        seed = student_seed(batch_seed, e.student)
        st = Student(e, prep, seed, work, out / e.student)
        old = read_doc(st.out / "results.json")
        meta = {"grader": gid, "seed": seed}
        if wanted and e.student not in wanted and e.name not in wanted:
            # not asked for (--only): its current result stays in the gradebook
            st.status = "other"
            if old is not None and is_final(old, prep, meta):
                st.doc = old
        elif old is not None and not opts.force and is_done(old, prep, meta):
            st.doc, st.status = old, "kept"
        students.append(st)

    common_meta = {"grader": gid, "batch_seed": batch_seed, "run": secrets.token_hex(8)}
    rows_path, junit_path = out / "gradebook.csv", out / "junit.xml"

    def publish():
        rows = [Row(s.entry.student, s.doc) for s in students if s.doc is not None]
        write_atomic(rows_path, gradebook_csv(rows, names))
        write_atomic(junit_path, junit_xml(rows))
        return rows

    # refused entries need no worker: their result is written here
    for st in students:
        if st.status == "todo" and st.prep.refused:
            st.doc = grade_submission(root, labs, st.out, st.seed, st.prep, work=st.work,
                                      unsafe=opts.unsafe, meta=common_meta, say=lambda s: None)
            st.status = "failed"
    todo = [s for s in students if s.status == "todo"]
    kept = sum(s.status == "kept" for s in students)
    refused = [s for s in students if s.status == "failed"]
    if kept:
        say(f"  {kept} students already graded by an earlier run are kept "
            f"(FORCE=1 regrades them)")
    for s in refused:
        say(f"  {s.entry.student}: REFUSED: {s.prep.refused}")
    publish()

    display = _Display(stream, len(todo), opts.jobs)
    display.failures = len(refused)
    t_start = time.monotonic()
    limit = opts.student_timeout or student_time_limit(labs)
    running: list[_Worker] = []
    free = list(range(opts.jobs))
    busy: set[int] = set()
    slot_changes = 0
    queue = list(todo)
    shares = cpu_shares(opts.jobs) if opts.pin else []
    common_build = out / ".work" / ".common-build"   # dot: never a student
    machine = out / ".work" / ".machine.json"
    pycache = None
    if queue:
        _build_common(root, common_build)
        # the workers' bytecode: kept in the project's build/ from one batch to the next
        pycache = precompile(root / "build" / ".pycache" if os.access(root / "build", os.W_OK)
                             else out / ".work" / ".pycache")
        write_atomic(machine, json.dumps(envmod.snapshot(_features_of(labs))) + "\n")
    set_subreaper()
    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    interrupted = ""
    try:
        while queue or running:
            while queue and free:
                st = queue.pop(0)
                slot = free.pop(0)
                taken = [w.cpus for w in running]
                cpus = next((c for c in shares if c not in taken), None)
                running.append(_start(root, labs, st, slot, opts, common_meta, common_build, limit,
                                      cpus, machine, pycache))
                st.status = "running"
            display.progress([w.student.entry.student for w in running])
            finished = _wait_some(running)
            died = False
            for w in finished:
                running.remove(w)
                if w.proc.poll() == SLOT_BUSY and slot_changes < 3 * opts.jobs + 10:
                    # another grader holds this slot's uid: take the next one, grade again
                    if w.log:
                        w.log.close()
                    slot_changes += 1
                    new = max([*free, *(x.slot for x in running), w.slot, *busy]) + 1
                    busy.add(w.slot)
                    display.line(f"  sandbox slot {w.slot} is in use by another grader: "
                                 f"using slot {new} instead")
                    free.append(new)
                    free.sort()
                    w.student.status = "todo"
                    queue.insert(0, w.student)
                    continue
                free.append(w.slot)
                free.sort()
                died |= not _collect(w, labs, opts, common_meta, limit)
                display.done += 1
                st = w.student
                if st.status == "failed":
                    display.failures += 1
                display.line(_student_line(display, st, names))
                publish()
            if died:            # what a killed or crashed worker left behind came back to us
                sweep_orphans({w.proc.pid for w in running})
    except (KeyboardInterrupt, _Stop) as e:
        interrupted = "Ctrl-C" if isinstance(e, KeyboardInterrupt) else str(e)
        for w in running:
            _kill(w)
            w.student.status = "todo"
        sweep_orphans(set())
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        display.finish()
        rows = publish()
    elapsed = time.monotonic() - t_start
    graded = [s for s in todo if s.status in ("done", "failed")]

    say()
    order = {s.entry.student: i for i, s in enumerate(students)}
    rows.sort(key=lambda r: order.get(r.student, 0))
    say(summary_table(rows, names, shutil.get_terminal_size((120, 24)).columns))
    say()
    failed = [s for s in students if s.status == "failed"]
    if graded:
        say(f"{len(graded)} students graded in {elapsed:.1f} s: "
            f"{elapsed / len(graded):.2f} s per student with JOBS={opts.jobs} "
            f"({sum(s.seconds for s in graded) / len(graded):.2f} s of grading each)")
    if kept:
        say(f"{kept} kept from an earlier run.")
    if failed:
        say(f"{len(failed)} could not be graded (0 points for what was not graded): "
            + "; ".join(f"{s.entry.student}: {_why_failed(s)}" for s in failed[:10])
            + (" ..." if len(failed) > 10 else ""))
    if opts.unsafe:
        say(f"WARNING: {UNSAFE_WARNING}.")
    say(f"Gradebook: {rows_path}; JUnit: {junit_path}; per student: {out}/<student>/results.json "
        f"and <lab>.log (seed {batch_seed})")
    if opts.autolab:
        for s in students:
            if s.doc is not None:
                line = autolab_line(s.doc)
                write_atomic(s.out / "autolab.json", line + "\n")
                say(f"{s.entry.student}: {line}")
    if interrupted:
        left = sum(s.status == "todo" for s in students)
        say(f"memlab batch: interrupted ({interrupted}); {len(rows)} results kept, {left} students "
            "left: run the same command again to grade only those")
        return 130
    return 0


def read_doc_any(path: Path) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _why_failed(s: Student) -> str:
    b = (s.doc or {}).get("extra_data", {}).get("batch", {})
    return b.get("refused") or b.get("error") or "?"


def _student_line(display: _Display, st: Student, names: list[str]) -> str:
    doc = st.doc or {}
    x = doc.get("extra_data", {})
    b = x.get("batch", {})
    parts = [f"{lab} {points(x['labs'][lab]['score'])}" for lab in names if lab in x.get("labs", {})]
    note = b.get("refused") or b.get("error") or ""
    return (f"[{display.done}/{display.total}] {st.entry.student}: "
            f"{points(doc.get('score', 0))}/{points(x.get('max_score', 0))} ({', '.join(parts)})"
            f"  {st.seconds:.1f} s" + (f"  FAILED: {note}" if note else "")
            + ("" if display.tty else f"  [{display.counts()}]"))


def cpu_shares(jobs: int, cpus: list[int] | None = None) -> list[list[int]]:
    """The CPUs each of `jobs` workers keeps to: the CPUs this process may use, cut into
    `jobs` runs of neighbours; [] (no pinning) for one job, or more jobs than CPUs.

    A student's whole process tree on its own CPUs: an address space is then only ever
    live on those, so its TLB flushes need no IPI to the other worker's CPUs, and a busy
    submission slows no other student's labs (on a 2-CPU VM: 7-10% less time per student)."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else sorted(cpus)
    if jobs < 2 or jobs > len(cpus):
        return []
    each, extra = divmod(len(cpus), jobs)
    shares, at = [], 0
    for i in range(jobs):
        n = each + (i < extra)
        shares.append(cpus[at:at + n])
        at += n
    return shares


def _start(root: Path, labs: list[Lab], st: Student, slot: int, opts: Options, meta: dict,
           common_build: Path, limit: float, cpus: list[int] | None = None,
           machine: Path | None = None, pycache: Path | None = None) -> _Worker:
    argv = [sys.executable, "-m", "grader", "--root", str(root), "submission",
            "--prepared", str(st.work), "--out", str(st.out), "--labs", " ".join(l.name for l in labs),
            "--seed", str(st.seed), "--slot", str(slot), "--common-build", str(common_build),
            "--parent", str(os.getpid()), "--meta", json.dumps(meta)]
    if cpus:
        argv += ["--cpus", ",".join(map(str, cpus))]
    if machine:
        argv += ["--machine", str(machine)]
    # run_batch() tried the sandbox a moment ago: no worker tries it again
    argv.append("--unsafe" if opts.unsafe else "--sandbox-checked")
    st.out.mkdir(parents=True, exist_ok=True)
    log = open(st.work / "worker.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(PACKAGE_PARENT), env=_worker_env(pycache), start_new_session=True)
    now = time.monotonic()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):       # an old kernel: _wait_some() polls
        pidfd = None
    return _Worker(st, proc, slot, now, now + limit, log, cpus, pidfd)


def _wait_some(running: list[_Worker]) -> list[_Worker]:
    """Workers that ended (or passed their time limit) within about 0.2 s; woken at
    once by the end of a worker (its pidfd), so the next student starts at once."""
    end = time.monotonic() + 0.2
    while True:
        now = time.monotonic()
        done = [w for w in running if w.proc.poll() is not None or now >= w.deadline]
        if done or now >= end:
            for w in done:
                if w.pidfd is not None:
                    os.close(w.pidfd)
                    w.pidfd = None
            return done
        fds = [w.pidfd for w in running if w.pidfd is not None]
        wait = min([end, *(w.deadline for w in running)]) - now
        if fds and len(fds) == len(running):
            select.select(fds, [], [], max(wait, 0))
        else:
            time.sleep(min(0.02, max(wait, 0)))


def _kill(w: _Worker):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(w.proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        w.proc.wait(timeout=10)
    if w.log:
        w.log.close()


def _collect(w: _Worker, labs: list[Lab], opts: Options, meta: dict, limit: float) -> bool:
    """Take a finished (or timed-out) worker's result; False when the worker did not end
    on its own with status 0 (killed, crashed)."""
    st = w.student
    st.seconds = time.monotonic() - w.started
    timed_out = w.proc.poll() is None
    if timed_out:
        _kill(w)
    if w.log:
        w.log.close()
    rc = w.proc.returncode
    doc = read_doc(st.out / "results.json")
    full_meta = {"grader": meta["grader"], "seed": st.seed}
    ours = doc is not None and doc["extra_data"].get("batch", {}).get("run") == meta["run"]
    ok = not timed_out and rc == 0 and ours and is_final(doc, st.prep, full_meta)
    if ok:
        st.doc = doc
        st.status = "failed" if doc["extra_data"]["batch"].get("error") else "done"
    else:
        if timed_out:
            reason = f"the grader stopped at the time limit for one student ({limit:.0f} s)"
        else:
            tail = _tail(st.work / "worker.log")
            reason = (f"the grader process failed (exit status {rc})" if rc and rc > 0 else
                      f"the grader process was killed by {_signame(-rc)}" if rc and rc < 0 else
                      "the grader process wrote no complete result") + (f": {tail}" if tail else "")
        if not ours or not _doc_matches(doc, st.prep, full_meta):
            results = [placeholder(lab, st.seed, "not graded yet", "not graded") for lab in labs]
            doc = submission_document(results, {lab.name: "pending" for lab in labs}, st.prep,
                                      st.seed, st.seconds,
                                      {**meta, "seed": st.seed, "unsafe": opts.unsafe,
                                       "complete": False, "error": ""})
        doc = mark_failed(doc, reason)
        doc["execution_time"] = round(st.seconds, 2)
        write_results(st.out / "results.json", doc)
        st.doc = doc
        st.status = "failed"
    shutil.rmtree(st.work / "build", ignore_errors=True)
    return not timed_out and rc == 0


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(ln.strip()[:200] for ln in lines[-n:])


def set_subreaper():
    """Orphans of a killed worker come back to the driver, which kills them."""
    from .runner import set_subreaper as _sr
    _sr()


def sweep_orphans(workers: set[int]):
    """Kill and reap children of the driver that are not live workers (orphans)."""
    from .runner import sweep_children
    sweep_children(exclude=workers)


def cmd_batch(args) -> int:
    from .cli import _labs
    root = Path(args.root)
    labs = _labs(root, args.labs.split() if args.labs else None)
    opts = Options(jobs=args.jobs, force=args.force, unsafe=args.unsafe, seed=args.seed,
                   only=args.only.split() if args.only else [],
                   student_timeout=args.student_timeout, autolab=args.autolab, pin=args.pin)
    try:
        return run_batch(root, labs, Path(args.submissions), Path(args.out), opts)
    except BatchError as e:
        print(f"memlab batch: {e}", file=sys.stderr)
        return 2


def register(sub):
    """The `submission` and `batch` subcommands (grader/cli.py)."""
    import argparse
    s = sub.add_parser("submission", help="grade one student's submission (a folder or an "
                       "archive) into --out: results.json, <lab>.log")
    s.add_argument("--src", help="the submission: a folder, .tar.gz, .tgz or .zip holding "
                   "<lab>/<lab>.c or labs/<lab>/<lab>.c")
    s.add_argument("--prepared", help=argparse.SUPPRESS)     # a work dir made by prepare()
    s.add_argument("--work", help="where to unpack it (default: a temporary folder)")
    s.add_argument("--out", required=True, help="folder for results.json and the logs")
    s.add_argument("--labs", help='space-separated lab names (default: every lab)')
    s.add_argument("--seed", type=int)
    s.add_argument("--slot", type=int, default=None,
                   help="sandbox slot (its own uid), 0..JOBS-1 (default: the first free one)")
    s.add_argument("--common-build", help=argparse.SUPPRESS)
    s.add_argument("--unsafe", action="store_true",
                   help="grade without a sandbox (the results say so)")
    s.add_argument("--autolab", action="store_true",
                   help='print Autolab\'s {"scores": {...}} line last (and write autolab.json)')
    s.add_argument("--quiet", action="store_true", help="with --autolab: print only that line")
    s.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    s.add_argument("--meta", help=argparse.SUPPRESS)
    s.add_argument("--machine", help=argparse.SUPPRESS)     # env.snapshot() of the driver, a file
    s.add_argument("--sandbox-checked", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--cpus", help="comma-separated CPU numbers the grading keeps to "
                   "(the batch gives each worker its own)")
    s.set_defaults(func=cmd_submission)

    b = sub.add_parser("batch", help="grade a class: every entry of SUBMISSIONS into OUT "
                       "(gradebook.csv, junit.xml, <student>/results.json); docs/batch.md")
    b.add_argument("submissions", help="folder of entries: one folder, .tar.gz, .tgz or .zip "
                   "per student")
    b.add_argument("out", help="folder for the results (resumable)")
    b.add_argument("--jobs", "-j", type=int, default=1, help="students graded at once")
    b.add_argument("--labs", help='space-separated lab names (default: every lab)')
    b.add_argument("--force", action="store_true", help="regrade students already graded")
    b.add_argument("--unsafe", action="store_true",
                   help="grade without a sandbox (every results.json says so)")
    b.add_argument("--seed", type=int, help="the batch seed (default: the one in OUT/batch.json, "
                   "else a new one)")
    b.add_argument("--only", help="space-separated student names: grade only these")
    b.add_argument("--student-timeout", type=float,
                   help="seconds one student may take in all (default: from the labs' limits)")
    b.add_argument("--autolab", action="store_true",
                   help='write <student>/autolab.json and print each {"scores": ...} line')
    b.add_argument("--no-pin", dest="pin", action="store_false",
                   help="let every worker use every CPU (default with JOBS>1: each worker keeps "
                   "to its own share of the CPUs)")
    b.set_defaults(func=cmd_batch)
