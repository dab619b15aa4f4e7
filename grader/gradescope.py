"""Gradescope (and Autolab) autograding: `make gradescope` and what runs per submission.

    build_zip(root, out, labs)     dist/gradescope-autograder.zip: setup.sh, run_autograder,
                                   memlab/ (the course tree, hidden checks included)
    collect(submission, labs, w)   the student's lab files, as uploaded
    autograde(root, submission, results, ...)
                                   grade them into results.json, rewritten after every lab

Gradescope unpacks the zip into /autograder/source, runs setup.sh once when it
builds the image, then copies run_autograder to /autograder/run_autograder and
runs it for every submission. run_autograder calls `python3 -m grader autograde`
(below): it finds the lab files in the upload, stages them as <lab>/<lab>.c and
grades them with batch grading's `python3 -m grader submission` (grader/batch.py)
in a process of its own, or in this process when that does not exist. It always
leaves a valid results.json: before anything is graded it writes one where every
lab is "not graded yet", the grading rewrites it after each lab, and if the
grader itself fails it writes one whose output says so (the shell script writes
one of its own if Python cannot even start). Every /autograder path
can be moved with an environment variable (see RUN_AUTOGRADER), which is how the
tests run it in a temporary directory. docs/gradescope.md is the instructor's guide.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .checks import Verdict
from .grading import LabResult, grade_lab
from .handout import EXCLUDE_NAMES, EXCLUDE_SUFFIXES, MANIFEST, source_for_grading
from .results import replacing, results_document, write_results
from .spec import Lab, SpecError, discover

ZIP_NAME = "gradescope-autograder.zip"
TREE_DIR = "memlab"                         # the course tree's folder inside the zip
CONFIG = Path(".memlab") / "gradescope.json"
# Top-level entries of the course tree that are not part of the autograder.
TOP_EXCLUDE = {"tests", "bench", ".git", "build", "dist", ".ci", ".memlab", "submission.tar.gz"}
DEFAULT_DEADLINE = 480                      # s: start no lab after this (Gradescope's default is 10 min)
MAX_SOURCE = 1 << 20                        # a lab file above this is not graded
MAX_MEMBERS = 2000                          # an uploaded archive with more files is not unpacked
OUTPUT_LIMIT = 4000                         # characters of one compiler log in the output
ACCEPTED = ("labs/{lab}/{lab}.c", "{lab}/{lab}.c", "{lab}.c")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class GradescopeError(Exception):
    pass


# ---- make gradescope ---------------------------------------------------------------

def packages(root: Path, purposes=("build", "grade")) -> list[str]:
    """The Debian packages listed in deps/packages.txt for these purposes."""
    names = []
    for line in (Path(root) / "deps" / "packages.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[1] in purposes \
                and fields[0] not in names:
            names.append(fields[0])
    return names


SETUP_SH = r"""#!/bin/sh
# memlab: Gradescope image setup, made by `make gradescope` (docs/gradescope.md).
# Gradescope runs it once, when it builds the autograder image, from
# /autograder/source where the zip was unpacked. It installs the Debian/Ubuntu
# packages the labs and the grader need (deps/packages.txt, purposes build and
# grade), builds the helper library and every lab once, and says what this
# machine supports (`make doctor`: the checks that will skip here).
#   MEMLAB_SKIP_APT=1             do not run apt-get (the packages are there)
#   MEMLAB_AUTOGRADER_SOURCE=DIR  where the zip was unpacked (default: this script's folder)
set -eu
SRC="${MEMLAB_AUTOGRADER_SOURCE:-$(cd "$(dirname "$0")" && pwd)}"
TREE="$SRC/@TREE@"
PACKAGES="@PACKAGES@"

if [ "${MEMLAB_SKIP_APT:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $PACKAGES
    # Python 3.10 (Ubuntu 22.04) reads TOML with python3-tomli
    if ! python3 -c 'import tomllib' 2>/dev/null; then
        apt-get install -y -q --no-install-recommends python3-tomli
    fi
fi
chmod +x "$SRC/run_autograder" 2>/dev/null || true
make -C "$TREE" -j"$(nproc 2>/dev/null || echo 1)" build
PY=$("$TREE/deps/find-python")
cd "$TREE"
"$PY" -m grader --root "$TREE" doctor || true
echo "memlab: autograder ready (labs: @LABS@)"
"""

RUN_AUTOGRADER = r"""#!/bin/sh
# memlab: Gradescope's entry point, made by `make gradescope` (docs/gradescope.md).
# Gradescope copies it to /autograder/run_autograder and runs it once per
# submission: it grades the student's files in /autograder/submission with the
# course tree in /autograder/source/@TREE@ and writes /autograder/results/results.json,
# again after every lab, so that a crash or a timeout keeps what was graded.
# Every path can be moved (the tests run it in a temporary directory):
#   MEMLAB_AUTOGRADER_ROOT        /autograder
#   MEMLAB_AUTOGRADER_SOURCE      $MEMLAB_AUTOGRADER_ROOT/source
#   MEMLAB_AUTOGRADER_SUBMISSION  $MEMLAB_AUTOGRADER_ROOT/submission
#   MEMLAB_AUTOGRADER_RESULTS     $MEMLAB_AUTOGRADER_ROOT/results/results.json
#   MEMLAB_AUTOGRADER_METADATA    $MEMLAB_AUTOGRADER_ROOT/submission_metadata.json
# MEMLAB_SEED=n draws the parameters from seed n (default: from the submission's
# id); MEMLAB_AUTOLAB=1 ends the output with Autolab's {"scores": ...} line.
AG="${MEMLAB_AUTOGRADER_ROOT:-/autograder}"
SRC="${MEMLAB_AUTOGRADER_SOURCE:-$AG/source}"
SUB="${MEMLAB_AUTOGRADER_SUBMISSION:-$AG/submission}"
RESULTS="${MEMLAB_AUTOGRADER_RESULTS:-$AG/results/results.json}"
META="${MEMLAB_AUTOGRADER_METADATA:-$AG/submission_metadata.json}"
TREE="$SRC/@TREE@"

mkdir -p "$(dirname "$RESULTS")"
rm -f "$RESULTS"
PY=$("$TREE/deps/find-python" 2>/dev/null) || PY=python3
set -- --submission "$SUB" --results "$RESULTS" --metadata "$META"
if [ -n "${MEMLAB_SEED:-}" ]; then set -- "$@" --seed "$MEMLAB_SEED"; fi
if [ "${MEMLAB_AUTOLAB:-0}" = 1 ]; then set -- "$@" --autolab; fi
cd "$TREE" && "$PY" -m grader --root "$TREE" autograde "$@"
status=$?
if [ ! -s "$RESULTS" ]; then
    # Python did not even start (or died before its first write): still a valid results.json
    cat > "$RESULTS" <<EOF
{"score": 0, "execution_time": 0, "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": [], "extra_data": {"error": "the grader did not start", "exit_status": $status}, "output": "memlab: the autograder failed before it could grade anything (exit status $status). This is a problem with the autograder, not with your submission: tell your instructor, who can read the details in the autograder's output."}
EOF
fi
exit 0
"""


def _tree_files(root: Path):
    """(path, name in the zip) of every file of the course tree that goes in the zip."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        keep = []
        for d in sorted(dirnames):
            if d in EXCLUDE_NAMES or (rel_dir == Path(".") and d in TOP_EXCLUDE):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name in EXCLUDE_NAMES or name.endswith(EXCLUDE_SUFFIXES):
                continue
            if rel_dir == Path(".") and (name in TOP_EXCLUDE or name.endswith(".zip")):
                continue
            p = Path(dirpath) / name
            if p.is_file():                 # a symlink to a file is stored as the file
                yield p, f"{TREE_DIR}/{(rel_dir / name).as_posix()}"


def _zip_add(z: zipfile.ZipFile, name: str, data: bytes, mode: int, mtime: float):
    info = zipfile.ZipInfo(name, date_time=time.localtime(max(mtime, 315532800))[:6])
    info.create_system = 3                  # Unix: unzip honours the mode below
    info.external_attr = (stat.S_IFREG | (mode & 0o777)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


@dataclass
class ZipSummary:
    path: Path
    files: int
    size: int
    labs: list[str]
    max_points: float
    hidden: int                              # hidden checks in the graded labs


def build_zip(root: Path, out: Path, labs: list[str] | None = None,
              deadline: float = DEFAULT_DEADLINE) -> ZipSummary:
    """Write the Gradescope autograder zip of the course tree at root."""
    root = Path(root).resolve()
    if (root / MANIFEST).is_file():
        raise GradescopeError(f"{root} is a student handout ({MANIFEST.as_posix()}): the "
                              "autograder is built from the instructor's course tree, which has "
                              "the solutions and the hidden checks")
    if not (root / "labs").is_dir() or not (root / "grader").is_dir():
        raise GradescopeError(f"{root} is not a memlab tree (no labs/ and grader/)")
    all_labs = discover(root / "labs")
    by_name = {lab.name: lab for lab in all_labs}
    if labs:
        unknown = [n for n in labs if n not in by_name]
        if unknown:
            raise GradescopeError(f"no such lab: {', '.join(unknown)} "
                                  f"(labs: {', '.join(by_name)})")
        chosen = [by_name[n] for n in dict.fromkeys(labs)]
    else:
        chosen = all_labs
    if not chosen:
        raise GradescopeError(f"{root}/labs holds no lab")
    pkgs = packages(root)
    out = Path(out)
    out_abs = out.resolve()
    if out_abs.is_relative_to(root) and out_abs.parent != root and \
            not any(out_abs.is_relative_to(root / d) for d in TOP_EXCLUDE):
        raise GradescopeError(f"{out} is inside the tree that goes into the zip: "
                              "write it under dist/ or outside the tree")

    config = {"format": 1, "memlab_version": __version__, "labs": [lab.name for lab in chosen],
              "deadline_s": deadline}
    sub = {"@TREE@": TREE_DIR, "@PACKAGES@": " ".join(pkgs),
           "@LABS@": " ".join(lab.name for lab in chosen)}

    def fill(text: str) -> bytes:
        for k, v in sub.items():
            text = text.replace(k, v)
        return text.encode()

    now = time.time()
    count = 0
    with replacing(out, ".zip") as (fd, _), os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w") as z:
        _zip_add(z, "setup.sh", fill(SETUP_SH), 0o755, now)
        _zip_add(z, "run_autograder", fill(RUN_AUTOGRADER), 0o755, now)
        for p, name in _tree_files(root):
            st = p.stat()
            _zip_add(z, name, source_for_grading(p, root), st.st_mode, st.st_mtime)
            count += 1
        _zip_add(z, f"{TREE_DIR}/{CONFIG.as_posix()}",
                 (json.dumps(config, indent=2) + "\n").encode(), 0o644, now)
    return ZipSummary(out, count + 3, out.stat().st_size, [lab.name for lab in chosen],
                      sum(lab.max_points for lab in chosen),
                      sum(1 for lab in chosen for c in lab.checks if c.hidden))


# ---- the submission, as uploaded ------------------------------------------------------

@dataclass
class Collected:
    files: dict[str, Path] = field(default_factory=dict)     # lab -> the file to grade
    origin: dict[str, str] = field(default_factory=dict)     # lab -> where it was found
    notes: list[str] = field(default_factory=list)           # shown to the student
    ignored: list[str] = field(default_factory=list)


def _regular_files(top: Path) -> dict[str, Path]:
    """relative name -> path of every regular file under top; symlinks are never
    followed (a link could point at the reference solution in the course tree)."""
    found: dict[str, Path] = {}
    top = Path(top)
    if not top.is_dir() or top.is_symlink():
        return found
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[p.relative_to(top).as_posix()] = p
    return found


def _unpack(archive: Path, dest: Path, labs: list[str]) -> tuple[list[str], str]:
    """Extract the members of archive that can be lab files into dest (nothing else:
    no links, no paths outside dest). (names extracted, problem or '')."""
    wanted = {f"{lab}.c" for lab in labs}
    names: list[str] = []

    def ok_name(name: str) -> bool:
        parts = Path(name).parts
        return (bool(parts) and parts[-1] in wanted and not Path(name).is_absolute()
                and ".." not in parts and len(parts) <= 4)

    def put(name: str, data: bytes):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        names.append(name)

    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                if len(z.infolist()) > MAX_MEMBERS:
                    return names, f"{archive.name}: more than {MAX_MEMBERS} files, not unpacked"
                for info in z.infolist():
                    if info.is_dir() or not ok_name(info.filename) or info.file_size > MAX_SOURCE:
                        continue
                    if stat.S_ISLNK(info.external_attr >> 16):
                        continue
                    put(info.filename, z.read(info))
        else:
            with tarfile.open(archive) as tar:
                for i, m in enumerate(tar):
                    if i >= MAX_MEMBERS:
                        return names, f"{archive.name}: more than {MAX_MEMBERS} files, not unpacked"
                    if not m.isreg() or not ok_name(m.name) or m.size > MAX_SOURCE:
                        continue
                    f = tar.extractfile(m)
                    if f is not None:
                        put(m.name, f.read())
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as e:
        return names, f"{archive.name}: cannot be unpacked ({e})"
    return names, ""


def collect(submission: Path, labs: list[str], work: Path,
            all_labs: list[str] | None = None) -> Collected:
    """Find each lab's file in the submission, as the student uploaded it:
    labs/<lab>/<lab>.c, <lab>/<lab>.c or <lab>.c, at the top or inside one folder
    (a zipped handout), loose or inside an uploaded .tar.gz/.tgz/.tar/.zip
    (`make submit` makes one). Loose files come first, then archives."""
    submission, work = Path(submission), Path(work)
    c = Collected()
    loose = _regular_files(submission)
    if not submission.is_dir():
        c.notes.append("the submission folder is missing: nothing was submitted")
    sources: list[tuple[str, dict[str, Path]]] = [("", loose)]
    for rel, p in sorted(loose.items()):
        if "/" not in rel and rel.endswith(ARCHIVE_SUFFIXES):
            dest = work / "unpacked" / rel
            names, problem = _unpack(p, dest, labs + list(all_labs or []))
            if problem:
                c.notes.append(problem)
            elif not names:
                c.notes.append(f"{rel}: holds no lab file ({', '.join(f'{x}.c' for x in labs)})")
            sources.append((rel, _regular_files(dest)))

    used: set[tuple[str, str]] = set()
    for lab in labs:
        candidates: list[tuple[str, str, Path]] = []     # (archive, name, path)
        for archive, files in sources:
            tops = [""] + sorted({n.split("/", 1)[0] + "/" for n in files if "/" in n
                                  and not n.startswith((".", "__MACOSX"))})
            for prefix in tops:
                for pattern in ACCEPTED:
                    name = prefix + pattern.format(lab=lab)
                    if name in files and (archive, name) not in {(a, n) for a, n, _ in candidates}:
                        candidates.append((archive, name, files[name]))
        if not candidates:
            continue
        archive, name, path = candidates[0]
        where = f"{archive}:{name}" if archive else name
        for a, n, _ in candidates:
            used.add((a, n))
        if path.stat().st_size > MAX_SOURCE:
            c.notes.append(f"{where}: larger than {MAX_SOURCE // 1024} KiB, not graded")
            continue
        c.files[lab] = path
        c.origin[lab] = where
        others = [f"{a}:{n}" if a else n for a, n, _ in candidates[1:]]
        if others:
            c.notes.append(f"lab '{lab}': graded {where}; also found, not graded: "
                           + ", ".join(others))
    other_labs = set(all_labs or []) - set(labs)
    for rel in sorted(loose):
        if ("", rel) in used or (rel.endswith(ARCHIVE_SUFFIXES) and "/" not in rel):
            continue
        base = rel.rsplit("/", 1)[-1]
        if base.endswith(".c") and base[:-2] in other_labs:
            c.ignored.append(f"{rel} (lab '{base[:-2]}' is not part of this assignment)")
        else:
            c.ignored.append(rel)
    return c


# ---- grading one submission ------------------------------------------------------------

def load_config(root: Path) -> dict:
    path = Path(root) / CONFIG
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def seed_from_metadata(metadata: Path | None) -> int | None:
    """Gradescope's submission id (submission_metadata.json), folded into a seed: a
    regrade of the same submission draws the same parameters."""
    if not metadata or not Path(metadata).is_file():
        return None
    try:
        ident = json.loads(Path(metadata).read_text()).get("id")
        return int(ident) % 1_000_000 if ident is not None else None
    except (ValueError, TypeError, AttributeError, OSError):
        return None


def placeholder(lab: Lab, seed: int, message: str, error: str) -> LabResult:
    """A lab that was not graded: every check fails with message, score 0."""
    res = LabResult(lab, seed, {}, None, error=error)
    res.verdicts = [Verdict(lab.name, check, "fail", 0.0, message=message) for check in lab.checks]
    return res


def _clip(text: str, limit: int = OUTPUT_LIMIT) -> str:
    text = text.rstrip()
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut here ...]"


def visible_summary(doc: dict) -> str:
    """The scores a student may read: hidden checks are counted nowhere in them (the
    same text as batch grading's)."""
    from .checks import fmt
    vis = [t for t in doc["tests"] if t["visibility"] != "hidden"]
    head = (f"memlab {__version__}: {fmt(sum(t['score'] for t in vis))}/"
            f"{fmt(sum(t['max_score'] for t in vis))} points")
    if len(vis) != len(doc["tests"]):
        head += " on the visible checks (hidden checks are graded too, and not shown here)"
    lines = [head]
    for lab, entry in doc["extra_data"]["labs"].items():
        mine = [t for t in vis if t["extra_data"]["lab"] == lab]
        lines.append(f"{lab}: {fmt(sum(t['score'] for t in mine))}/"
                     f"{fmt(sum(t['max_score'] for t in mine))}"
                     + (f" ({entry['error']})" if entry.get("error") else ""))
    return "\n".join(lines)


def not_submitted_message(lab: str) -> str:
    return f"labs/{lab}/{lab}.c was not in your submission"


class Autograder:
    """One submission's grading: what was found, what was graded, results.json."""

    def __init__(self, root: Path, results: Path | None, seed: int, out=None):
        self.root = Path(root)
        self.results_path = Path(results) if results else None
        self.seed = seed
        self.out = out
        self.t0 = time.monotonic()
        self.labs: list[Lab] = []
        self.done: dict[str, LabResult] = {}
        self.collected = Collected()
        self.notes: list[str] = []           # shown at the top of the output
        self.compile_logs: dict[str, str] = {}
        self.facts: dict = {}
        self.machine: dict = {}

    def say(self, text: str = ""):
        print(text, file=self.out or sys.stdout, flush=True)

    def results(self, pending_message: str, pending_error: str) -> list[LabResult]:
        return [self.done.get(lab.name) or placeholder(lab, self.seed, pending_message, pending_error)
                for lab in self.labs]

    def document(self, pending_message: str = "not graded: the autograder stopped before it "
                 "reached this lab (a time limit or a crash); tell your instructor",
                 pending_error: str = "not graded") -> dict:
        doc = results_document(self.results(pending_message, pending_error), self.facts,
                               self.seed, time.monotonic() - self.t0)
        doc["output"] = visible_summary(doc)
        for r in self.done.values():
            if r.build is not None and not r.build.ok:
                self.compile_logs[r.lab.name] = r.build.log
        return self.annotate(doc)

    def annotate(self, doc: dict) -> dict:
        """doc with what the student should know around its output: which file was graded
        for which lab, what was ignored, the compiler's words, the seed."""
        head = []
        if self.collected.origin:
            head.append("Graded from your submission: " + ", ".join(
                f"{lab} <- {where}" for lab, where in self.collected.origin.items()))
        head += [f"Note: {n}" for n in self.notes + self.collected.notes]
        if self.collected.ignored:
            shown = self.collected.ignored[:20]
            more = len(self.collected.ignored) - len(shown)
            head.append("Ignored (not a lab file of this assignment): " + ", ".join(shown)
                        + (f" and {more} more" if more > 0 else ""))
        tail = [f"--- {lab}: the compiler said ---\n{_clip(log)}"
                for lab, log in self.compile_logs.items() if log.strip()]
        if self.collected.files:
            tail.append(f"The parameters were drawn from seed {self.seed}: `make lab-<lab> "
                        f"SEED={self.seed}` repeats them on your machine.")
        doc["output"] = "\n\n".join(x for x in ["\n".join(head), doc["output"], *tail] if x)
        doc.setdefault("extra_data", {})
        doc["extra_data"]["submission"] = {"graded": self.collected.origin,
                                           "ignored": self.collected.ignored,
                                           "notes": self.collected.notes}
        if self.machine:
            doc["extra_data"]["machine"] = self.machine
        return doc

    def write(self, doc: dict | None = None):
        if self.results_path is not None:
            write_results(self.results_path, doc if doc is not None else self.document())


def scores_line(doc: dict, labs: list[Lab]) -> str:
    """Autolab's last line: {"scores": {"<lab>": points, ...}}."""
    per_lab = (doc.get("extra_data") or {}).get("labs") or {}
    return json.dumps({"scores": {lab.name: round(float(per_lab.get(lab.name, {}).get("score", 0)), 4)
                                  for lab in labs}})


# ---- the engine: `python3 -m grader submission` (grader/batch.py) when there is one ----------

def _batch():
    """grader.batch when it offers the `submission` subcommand, else None."""
    try:
        from . import batch
    except ImportError:
        return None
    return batch if hasattr(batch, "cmd_submission") else None


def _sandbox_ok() -> bool:
    """Whether grader/sandbox.py can run the labs here; without it, the Gradescope
    container (one per submission) is the only sandbox and the grading says --unsafe."""
    if os.environ.get("MEMLAB_AUTOGRADER_SANDBOX", "auto") == "0":
        return False
    try:
        from . import sandbox  # type: ignore[attr-defined]
        return bool(sandbox.available()[0])
    except Exception:  # noqa: BLE001 - no sandbox, or a broken one: grade without
        return False


def _build_log(log_file: Path) -> str:
    """The '== build ==' section of a lab's log (grader/report.py log_text)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    if "== build ==\n" not in text:
        return ""
    section = text.split("== build ==\n", 1)[1]
    return section.split("\n\n== ", 1)[0].strip()


def _read_doc(path: Path) -> dict | None:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(doc, dict) and isinstance(doc.get("tests"), list) \
        and isinstance(doc.get("extra_data"), dict) and isinstance(doc["extra_data"].get("labs"), dict)
    return doc if ok else None


def _mark_unfinished(doc: dict, reason: str) -> dict:
    """The labs a stopped `submission` had not finished (still "not graded" in its last
    results.json) score 0 and say why; the labs it finished keep their results."""
    labs = doc["extra_data"]["labs"]
    unfinished = {lab for lab, e in labs.items() if e.get("error") == "not graded"}
    for t in doc["tests"]:
        x = t["extra_data"]
        if x.get("lab") in unfinished:
            x["verdict"] = "error"
            x["message"] = f"not graded: {reason}"
            t["status"], t["score"] = "failed", 0
            t["output"] = f"FAILED: {t['name'].split(': ', 1)[-1]}. {x['message']}."
    doc["extra_data"].setdefault("batch", {})["error"] = reason
    doc["output"] = f"The grading did not finish: {reason}.\n\n{doc.get('output', '')}"
    return doc


def _grade_with_batch(ag: Autograder, batch, staged: Path, work: Path, deadline: float) -> dict:
    """Grade the staged submission with `python3 -m grader submission` in a process of
    its own; it rewrites results.json after every lab (partial results). At the time
    budget it is killed and the labs it had not finished say so."""
    out_dir = ag.results_path.parent if ag.results_path is not None else work / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "grader", "--root", str(ag.root), "submission",
            "--src", str(staged), "--out", str(out_dir), "--work", str(work / "batch"),
            "--labs", " ".join(lab.name for lab in ag.labs), "--seed", str(ag.seed)]
    if (ag.root / "build" / "libmemlab.a").is_file():      # built once by setup.sh
        argv += ["--common-build", str(ag.root / "build")]
    if not _sandbox_ok():
        argv.append("--unsafe")
    log = work / "submission.log"
    timed_out = False
    with open(log, "w") as f:
        p = subprocess.Popen(argv, cwd=ag.root, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=max(1.0, deadline - (time.monotonic() - ag.t0)))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            rc = p.wait()
    text = log.read_text(errors="replace")
    ag.say(text.rstrip())
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")

    doc = _read_doc(out_dir / "results.json")
    if doc is None or "batch" not in doc["extra_data"]:
        if timed_out:
            raise GradescopeError(f"the autograder's time budget ({deadline:.0f} s) ran out "
                                  "before anything was graded")
        raise GradescopeError(f"`python3 -m grader submission` graded nothing (exit status "
                              f"{rc}{': ' + last if last else ''})")
    complete = doc["extra_data"]["batch"].get("complete") is True
    if timed_out:
        doc = _mark_unfinished(doc, f"the autograder's time budget ({deadline:.0f} s) ran out")
    elif rc != 0 or not complete:
        doc = _mark_unfinished(doc, f"the grader stopped (exit status {rc})"
                               + (f": {last}" if last else ""))

    # the student's own file names instead of the temporary ones
    text = json.dumps(doc)
    for tmp in (work / "batch" / "src", staged):
        text = text.replace(json.dumps(str(tmp) + "/")[1:-1], "labs/")
    text = text.replace(json.dumps(str(work) + "/")[1:-1], "")
    doc = json.loads(text)
    for t in doc["tests"]:
        x = t["extra_data"]
        if x.get("kind") == "not_submitted":
            x["message"] = not_submitted_message(x["lab"])
            t["output"] = f"FAILED: {t['name'].split(': ', 1)[-1]}. {x['message']}."
    for lab, entry in doc["extra_data"].get("labs", {}).items():
        if entry.get("error") == "compile error":
            ag.compile_logs[lab] = _build_log(out_dir / f"{lab}.log")
            for tmp in (work / "batch" / "src", staged):
                ag.compile_logs[lab] = ag.compile_logs[lab].replace(str(tmp) + "/", "labs/")
            ag.compile_logs[lab] = ag.compile_logs[lab].replace(str(work) + "/", "")
    return ag.annotate(doc)


# ---- the engine when there is no grader/batch.py: the labs graded here ------------------------

def _submission_build(root: Path, work: Path) -> Path:
    """A build directory for the submission that reuses the helper library built by
    setup.sh (the reference binaries stay where they are)."""
    build = work / "build"
    build.mkdir(parents=True, exist_ok=True)
    ref = Path(root) / "build"
    if (ref / "libmemlab.a").is_file() and (ref / "common").is_dir():
        shutil.copytree(ref / "common", build / "common", dirs_exist_ok=True)
        shutil.copy2(ref / "libmemlab.a", build / "libmemlab.a")
    for stamp in ref.glob(".deps-*"):
        shutil.copy2(stamp, build / stamp.name)
    return build


def _tidy(res: LabResult, work: Path, shown: str):
    """The compiler's words with the student's file name instead of the temporary paths."""
    def fix(text: str) -> str:
        return text.replace(str(work / "submission" / res.lab.name / f"{res.lab.name}.c"), shown) \
                   .replace(str(work) + "/", "")
    if res.build is not None:
        res.build.log = fix(res.build.log)
    for v in res.verdicts:
        v.message = fix(v.message)


def _print_lab(ag: Autograder, res: LabResult, seconds: float):
    from .report import points, verdict_lines
    hidden = [v for v in res.verdicts if v.check.hidden]
    ag.say(f"  {res.lab.name:<12} {points(res.score)}/{points(res.max_score)}"
           f"{'  (' + res.error + ')' if res.error else ''}  [{seconds:.1f} s]")
    if res.build is None and not res.runs:       # not graded: one reason for every check
        ag.say(f"    {res.verdicts[0].message}" if res.verdicts else "")
        return
    for v in res.verdicts:
        if not v.check.hidden and v.status != "ok":
            ag.say("\n".join("  " + ln for ln in verdict_lines(v, False)))
    if hidden:                                   # never shown one by one: Autolab shows stdout
        ag.say(f"    + {len(hidden)} hidden check{'s' if len(hidden) != 1 else ''}: "
               f"{points(sum(v.score for v in hidden))}/{points(sum(v.max_score for v in hidden))}")


def _grade_here(ag: Autograder, staged: Path, work: Path, deadline: float) -> dict:
    """Grade the staged submission in this process, results.json after every lab."""
    build = _submission_build(ag.root, work) if ag.collected.files else None
    for lab in ag.labs:
        if lab.name not in ag.collected.files:
            res = placeholder(lab, ag.seed, not_submitted_message(lab.name), "not submitted")
            seconds = 0.0
        elif time.monotonic() - ag.t0 > deadline:
            res = placeholder(lab, ag.seed, f"not graded: the autograder's time budget "
                              f"({deadline:.0f} s) ran out before this lab; tell your instructor",
                              "out of time")
            seconds = 0.0
        else:
            t = time.monotonic()
            try:
                res = grade_lab(lab, ag.root, ag.seed, build_dir=build, labs_src=staged)
            except Exception as e:  # noqa: BLE001 - one lab's grader failure spares the others
                ag.say(f"  {lab.name}: the grader failed:\n{traceback.format_exc()}")
                res = placeholder(lab, ag.seed, f"not graded: the grader failed on this lab "
                                  f"({type(e).__name__}: {e}); this is not a problem with "
                                  "your file: tell your instructor", "grader error")
            _tidy(res, work, f"labs/{lab.name}/{lab.name}.c")
            seconds = time.monotonic() - t
        ag.done[lab.name] = res
        _print_lab(ag, res, seconds)
        ag.write()
    return ag.document()


def autograde(root: Path, submission: Path, results: Path | None = None, *,
              labs: list[str] | None = None, seed: int | None = None,
              metadata: Path | None = None, autolab: bool = False,
              deadline: float | None = None, engine: str = "auto", out=None) -> int:
    """Grade the submission folder with the course tree at root. results.json (when
    given) is valid at every moment after the first write; returns 0 unless the
    grader itself failed. engine: "batch" (`python3 -m grader submission`, in a
    process of its own), "here" (this process), or "auto" (batch when it exists)."""
    root = Path(root).resolve()
    if seed is None:
        seed = seed_from_metadata(metadata)
    if seed is None:
        seed = secrets.randbelow(1_000_000)
    ag = Autograder(root, results, seed, out)
    status = 0
    doc: dict = {}
    work = Path(tempfile.mkdtemp(prefix="memlab-autograde-"))
    try:
        ag.say(f"memlab {__version__} autograder: submission {submission}, seed {seed}")
        # a results.json exists from the start, whatever happens next
        ag.write({**results_document([], {}, seed, 0.0), "output":
                  "memlab: grading started but did not finish (a time limit or a crash); "
                  "tell your instructor."})
        config = load_config(root)
        every = discover(root / "labs")
        by_name = {lab.name: lab for lab in every}
        names = labs or config.get("labs") or list(by_name)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SpecError(f"no such lab: {', '.join(unknown)} (labs: {', '.join(by_name)})")
        ag.labs = [by_name[n] for n in dict.fromkeys(names)]
        if deadline is None:
            deadline = float(config.get("deadline_s", DEFAULT_DEADLINE))
        from . import env as envmod
        ag.facts = envmod.facts()
        try:
            from .doctor import collect as doctor_collect
            ag.machine = doctor_collect(root)
        except Exception as e:  # noqa: BLE001 - a description of the machine is optional
            ag.machine = {"error": f"{type(e).__name__}: {e}"}
        ag.collected = collect(Path(submission), [lab.name for lab in ag.labs], work,
                               all_labs=list(by_name))
        staged = work / "submission"            # <lab>/<lab>.c, whatever the upload's layout
        staged.mkdir()
        for lab, path in ag.collected.files.items():
            (staged / lab).mkdir()
            shutil.copyfile(path, staged / lab / f"{lab}.c")
        if ag.collected.files:
            ag.say("graded from the submission: " + ", ".join(
                f"{lab} <- {w}" for lab, w in ag.collected.origin.items()))
        else:
            ag.say("no lab file found in the submission")
            ag.notes.append("no lab file was found in your submission: upload "
                            + ", ".join(f"labs/{lab.name}/{lab.name}.c" for lab in ag.labs)
                            + " (or the bare <lab>.c files, or the submission.tar.gz that "
                            "`make submit` writes)")
        for n in ag.collected.notes:
            ag.say(f"note: {n}")
        ag.write()

        batch = _batch() if engine in ("auto", "batch") else None
        if engine == "batch" and batch is None:
            raise GradescopeError("no `python3 -m grader submission` in this grader (grader/batch.py)")
        if batch is not None:
            doc = _grade_with_batch(ag, batch, staged, work, deadline)
        else:
            doc = _grade_here(ag, staged, work, deadline)
        ag.write(doc)
        ag.say()
        ag.say(doc["output"])
    except BaseException as e:  # noqa: BLE001 - whatever happens, a results.json explains it
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
        tb = traceback.format_exc()
        ag.say(f"memlab: the autograder failed:\n{tb}")
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        msg = (f"not graded: the autograder failed ({why}); this is a problem with the "
               "autograder, not with your submission: tell your instructor")
        try:
            doc = ag.document(msg, "grader error")
            doc["output"] = (f"memlab: the autograder failed ({why}). This is a problem with "
                             "the autograder, not with your submission; your instructor can "
                             "see the details in the autograder's output.\n\n" + doc["output"])
            doc["extra_data"]["error"] = tb
        except BaseException:  # noqa: BLE001 - even the document failed: the bare minimum
            doc = {"score": 0, "execution_time": round(time.monotonic() - ag.t0, 2),
                   "output": f"memlab: the autograder failed ({why}); tell your instructor.",
                   "output_format": "text", "visibility": "visible",
                   "stdout_visibility": "hidden", "tests": [], "extra_data": {"error": tb}}
        try:
            ag.write(doc)
        except BaseException as e2:  # noqa: BLE001
            ag.say(f"memlab: cannot write {results}: {e2}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if autolab:                                 # Autolab reads the last line of the output
        ag.say(scores_line(doc, ag.labs))
    return status


# ---- command line ------------------------------------------------------------------------

def cmd_gradescope(args) -> int:
    from .report import points
    try:
        s = build_zip(Path(args.root), Path(args.out), args.labs.split() if args.labs else None,
                      deadline=args.deadline)
    except (GradescopeError, SpecError) as e:
        print(f"memlab gradescope: {e}", file=sys.stderr)
        return 2
    shown = os.path.relpath(s.path) if s.path.resolve().is_relative_to(Path.cwd()) else s.path
    print(f"memlab: wrote {shown} ({s.files} files, {s.size // 1024} KiB): setup.sh, "
          f"run_autograder, {TREE_DIR}/ (the course tree)")
    print(f"  labs graded: {' '.join(s.labs)}: {points(s.max_points)} points "
          f"(set the assignment's autograder points to this)")
    print(f"  it holds {s.hidden} hidden check{'s' if s.hidden != 1 else ''} (the reference "
          f"solutions are left out: the labs' files are the handout's stubs): give it to "
          f"Gradescope only")
    print("  upload it in Gradescope: the assignment's Configure Autograder page "
          "(docs/gradescope.md)")
    return 0


def cmd_autograde(args) -> int:
    return autograde(Path(args.root), Path(args.submission),
                     Path(args.results) if args.results else None,
                     labs=args.labs.split() if args.labs else None, seed=args.seed,
                     metadata=Path(args.metadata) if args.metadata else None,
                     autolab=args.autolab, deadline=args.deadline, engine=args.engine)


def register(sub) -> None:
    g = sub.add_parser("gradescope", help="build the Gradescope autograder zip "
                       f"(dist/{ZIP_NAME})")
    g.add_argument("--out", default=f"dist/{ZIP_NAME}")
    g.add_argument("--labs", help='the labs this assignment grades, e.g. "cow faults" '
                   "(default: every lab)")
    g.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE,
                   help="seconds after which no further lab is started (default: %(default)s)")
    g.set_defaults(func=cmd_gradescope)

    a = sub.add_parser("autograde", help="grade one submission folder (Gradescope's "
                       "run_autograder, Autolab): results.json, partial results as it goes")
    a.add_argument("--submission", required=True, help="the student's files, as uploaded")
    a.add_argument("--results", help="results.json to write (Gradescope's format)")
    a.add_argument("--metadata", help="submission_metadata.json (its id seeds the draw)")
    a.add_argument("--labs", help="the labs to grade (default: the zip's, or every lab)")
    a.add_argument("--seed", type=int)
    a.add_argument("--deadline", type=float, help="seconds after which no lab is started "
                   "(and, with the batch engine, the running one is stopped)")
    a.add_argument("--autolab", action="store_true",
                   help='end with Autolab\'s {"scores": {...}} line')
    a.add_argument("--engine", choices=("auto", "batch", "here"), default="auto",
                   help="batch: `python3 -m grader submission` in a process of its own; here: "
                   "in this process; auto (default): batch when this grader has it")
    a.set_defaults(func=cmd_autograde)
