"""The sandbox (grader/sandbox.py): the reference labs still score full marks in it,
and every hostile program of tests/sandbox_hostile/ ends with 0 points, a verdict
that names the cause, and no harm to the grader, the machine or other students.

Each hostile program replaces labs/faults/faults.c (or, for the compiler cases,
breaks its compilation). Around the grading the test sets up what a program must
not reach: "another student's" file and a "grader's" secret in a world-readable
folder of the host's /tmp (only the sandbox's view can hide them), a sentinel
file, a TCP listener on 127.0.0.1 and an abstract unix socket, and a victim
process; paths.h tells the programs where they are.

Skipped where the sandbox cannot run (not root, no bubblewrap, no cgroups): the
fork bomb and the memory hog must never run outside it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import env as envmod  # noqa: E402
from grader import sandbox as sandboxmod  # noqa: E402
from grader import spec  # noqa: E402
from grader.grading import grade_lab  # noqa: E402
from grader.runner import execute  # noqa: E402
from grader.sandbox import Limits, Sandbox, SandboxError  # noqa: E402

HOSTILE = ROOT / "tests" / "sandbox_hostile"
OK, REASON, FIX = sandboxmod.available()
pytestmark = pytest.mark.skipif(not OK, reason=f"no sandbox here: {REASON} ({FIX})")

TIMEOUT = 4.0                   # wall clock per run of a hostile program
LIMITS = Limits(memory_mb=128, pids=32, cpu_s=2, fsize_mb=8, nofile=64, tmp_mb=16,
                disk_mb=32, files=1000, compile_s=8)
RUNS = len(spec.load(ROOT / "labs" / "faults").runs)
BOUND = RUNS * (TIMEOUT + 2) + 20       # one hostile grading, build included, at most

TIME, MEMORY, PIDS, CPU = "stopped at the time limit", "memory limit", "process limit", "CPU-time limit"
NOT_COMPILED = "the lab did not compile"

# program -> (substrings one of which every failing verdict names, one of which every run's end names)
EXPECT = {
    "fork_bomb": ((PIDS,), (PIDS,)),
    # SIGXCPU after 2 s of CPU, or the 4 s wall clock first on a busy machine
    "busy_loop": ((CPU, TIME), (CPU, TIME)),
    "blocked": ((TIME,), (TIME,)),
    "memory_hog": ((MEMORY,), (MEMORY,)),
    "output_flood": (("output flood",), ("output flood",)),
    "file_flood": (("file-size limit",), ("file-size limit",)),
    "files_flood": (("disk limit",), ("disk limit",)),
    "crash": (("killed by SIGSEGV",), ("killed by SIGSEGV",)),
    "leftover": (("never reached checkpoint", "expected exit 0"), ("completed",)),
    "read_secrets": (("exited with status 3",), ("exited with status 3",)),
    "write_outside": (("exited with status 3",), ("exited with status 3",)),
    "signal_others": (("exited with status 3",), ("exited with status 3",)),
    "network": (("exited with status 3",), ("exited with status 3",)),
    "not_c": ((NOT_COMPILED,), ()),
    "include_zero": ((MEMORY, CPU, TIME), ()),
    # endless, and cc1's include bookkeeping grows: whichever limit comes first
    "include_forever": ((MEMORY, CPU, TIME), ()),
    "include_shadow": ((NOT_COMPILED,), ()),
    "include_student": ((NOT_COMPILED,), ()),
    "include_solution": ((NOT_COMPILED,), ()),
}
PROGRAMS = sorted(p.stem for p in HOSTILE.glob("*.c"))
REFERENCE = ["faults", "cow", "maps", "threshold", "oom", "cgroup", "numa"]


def test_every_program_has_an_expectation():
    assert set(PROGRAMS) == set(EXPECT)


# ---- the host's side: what the programs must not reach --------------------------

class Host:
    """Secrets, a sentinel, listeners and a victim process, all on the host."""

    def __init__(self, uid: int):
        self.dir = Path(f"/tmp/memlab-sbxtest-{secrets.token_hex(4)}")
        self.dir.mkdir(mode=0o755)
        os.chmod(self.dir, 0o755)
        (self.dir / "other").mkdir(mode=0o755)
        (self.dir / "grader").mkdir(mode=0o755)
        self.marker_other = "MEMLAB-SECRET-OTHER-" + secrets.token_hex(8)
        self.marker_grader = "MEMLAB-SECRET-GRADER-" + secrets.token_hex(8)
        self.other = self.dir / "other" / "secret.c"
        self.other.write_text(f'const char *answer = "{self.marker_other}";\n')
        self.grader = self.dir / "grader" / "secret.txt"
        self.grader.write_text(self.marker_grader + "\n")
        self.sentinel = self.dir / "sentinel.txt"
        self.sentinel.write_text("untouched\n")
        for p in (self.other, self.grader, self.sentinel):
            os.chmod(p, 0o644)
        self.host_tmp_file = Path(f"/tmp/memlab-sbxtest-created-{secrets.token_hex(4)}")
        self.hits: list[str] = []
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.abstract = "memlab-sbxtest-" + secrets.token_hex(4)
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract)
        self.unix.listen(16)
        self._stop = False
        self.threads = [threading.Thread(target=self._accept, args=(s, n), daemon=True)
                        for s, n in ((self.tcp, "tcp"), (self.unix, "unix"))]
        for t in self.threads:
            t.start()
        self.victim_pid = self._start_victim(uid)

    @staticmethod
    def _start_victim(uid: int) -> int:
        """A process of the sandbox's own uid on the host (only the sandbox's pid
        namespace keeps the program from it), not a child of ours: the grader, a
        child subreaper, kills and reaps its children after every run."""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        libc.prctl(37, ctypes.byref(flag), 0, 0, 0)        # PR_GET_CHILD_SUBREAPER
        libc.prctl(36, 0, 0, 0, 0)
        try:
            p = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                "sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"],
                               stdout=subprocess.PIPE, check=True, start_new_session=True)
        finally:
            libc.prctl(36, flag.value, 0, 0, 0)
        return int(p.stdout.split()[0])

    def victim_alive(self) -> bool:
        try:
            with open(f"/proc/{self.victim_pid}/cmdline", "rb") as f:
                return f.read().startswith(b"sleep")
        except OSError:
            return False

    def _accept(self, sock, name):
        sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits.append(name)
            conn.close()

    def paths_h(self) -> str:
        q = lambda p: '"' + str(p) + '"'  # noqa: E731
        return "\n".join([
            f"#define SECRET_OTHER {q(self.other)}",
            f"#define SECRET_GRADER {q(self.grader)}",
            f"#define SECRET_DIR {q(self.dir)}",
            f"#define SENTINEL {q(self.sentinel)}",
            f"#define HOST_TMP_FILE {q(self.host_tmp_file)}",
            f"#define COURSE_ROOT {q(ROOT)}",
            f"#define SOLUTION_FILE {q(ROOT / 'labs' / 'faults' / 'faults.c')}",
            f"#define GRADER_FILE {q(ROOT / 'grader' / 'runner.py')}",
            f"#define TCP_PORT {self.tcp.getsockname()[1]}",
            f"#define ABSTRACT_NAME {q(self.abstract)}",
            f"#define VICTIM_PID {self.victim_pid}",
            ""])

    def close(self):
        self._stop = True
        for t in self.threads:
            t.join(2)
        self.tcp.close()
        self.unix.close()
        try:
            os.kill(self.victim_pid, signal.SIGKILL)
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.host_tmp_file.exists():
            self.host_tmp_file.unlink()


@pytest.fixture(scope="module")
def host(hostile_sb):
    h = Host(hostile_sb.uid)
    yield h
    h.close()


def _free_sandbox(limits: Limits, first: int) -> Sandbox:
    """A sandbox on the first free slot from `first` (other graders may hold some)."""
    for slot in range(first, first + 100):
        try:
            return Sandbox(slot, limits)
        except SandboxError as e:
            if "in use" not in str(e):
                raise
    raise RuntimeError("no free sandbox slot")


@pytest.fixture(scope="module")
def hostile_sb():
    sb = _free_sandbox(LIMITS, 40)
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def reference_sb():
    sb = _free_sandbox(Limits(), 140)
    yield sb
    sb.close()


def _uid_processes(uid: int, but: int = 0) -> list[str]:
    found = []
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != but:
            try:
                if os.stat(f"/proc/{e}").st_uid == uid:
                    with open(f"/proc/{e}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{e}: {cmd}")
            except OSError:
                pass
    return found


def _seed_build(session_build: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copytree(session_build / "common", dest / "common")
    shutil.copy2(session_build / "libmemlab.a", dest / "libmemlab.a")
    for stamp in session_build.glob(".deps-*"):
        shutil.copy2(stamp, dest / stamp.name)
    return dest


# ---- the reference labs, sandboxed: full marks ---------------------------------

@pytest.mark.parametrize("lab", REFERENCE)
def test_reference_lab_scores_full_marks_sandboxed(lab, reference_sb, session_build, tmp_path):
    sb = reference_sb
    build = _seed_build(session_build, tmp_path / "build")
    res = grade_lab(spec.load(ROOT / "labs" / lab), ROOT, 1, build_dir=build, sandbox=sb)
    assert res.build and res.build.ok, res.build.log if res.build else res.error
    bad = [f"{v.check.name}: {v.status}: {v.message}" for v in res.verdicts if v.status == "fail"]
    assert not bad, "\n".join(bad)
    graded = [v for v in res.verdicts if v.status == "ok"]
    assert graded, "every check was skipped"
    for name, run in res.runs.items():
        assert run.sandbox.get("uid") == sb.uid, (name, run.sandbox)
        assert run.sandbox.get("oom_kill") == 0 and run.sandbox.get("pids_max") == 0, run.sandbox
        # the reference leaves nothing behind (bubblewrap's exited init, reaped, is not counted)
        assert run.leftovers == 0, (name, run.leftovers)
        for cp in run.checkpoints:      # the grader read /proc/<host pid> of the sandboxed lab
            assert cp.obs.get("uid") in (None, sb.uid) or cp.obs.get("uid") == sb.uid
    if lab == "cow":        # /proc/<pid>/mem of another uid, read by the root grader
        caps = res.runs["main"].captures
        assert all(isinstance(caps[c], int) for c in ("child_changed", "parent_changed")), caps
    if lab in ("oom", "cgroup"):        # the lab's own groups were made under the run's
        groups = [r.figures.get("cgroup") for r in res.runs.values()]
        assert all(isinstance(g, str) and "/memlab-sbx" in g for g in groups), groups
    assert not _uid_processes(sb.uid)


# ---- hostile programs ---------------------------------------------------------------

_GRADED: dict = {}


def _grade(name: str, sb: Sandbox, host: Host, session_build: Path, tmp_root: Path):
    if name in _GRADED:
        return _GRADED[name]
    work = tmp_root / name
    src = work / "src" / "faults"
    src.mkdir(parents=True)
    shutil.copy2(HOSTILE / f"{name}.c", src / "faults.c")
    (src / "paths.h").write_text(host.paths_h())
    build = _seed_build(session_build, work / "build")
    t0 = time.monotonic()
    res = grade_lab(spec.load(ROOT / "labs" / "faults"), ROOT, 1, build_dir=build,
                    labs_src=work / "src", timeout=TIMEOUT, sandbox=sb)
    elapsed = time.monotonic() - t0
    _GRADED[name] = (res, elapsed)
    return res, elapsed


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture
def graded(hostile_sb, host, session_build, hostile_root):
    return lambda name: _grade(name, hostile_sb, host, session_build, hostile_root)


@pytest.mark.parametrize("name", PROGRAMS)
def test_hostile_program_scores_nothing_and_names_the_cause(name, graded, hostile_sb, host):
    res, elapsed = graded(name)
    causes, ends = EXPECT[name]
    assert elapsed <= BOUND, f"the grading took {elapsed:.1f} s"
    assert res.score == 0, [(v.check.name, v.status) for v in res.verdicts]
    for v in res.verdicts:
        if v.status == "skip":
            continue
        assert v.status == "fail" and not v.internal, (v.check.name, v.status, v.message)
        assert any(c in v.message for c in causes), f"{v.check.name}: {v.message!r}"
    for rname, run in res.runs.items():
        assert any(e in run.describe() for e in ends), f"run {rname}: {run.describe()}"
        assert run.duration <= TIMEOUT + 2, f"run {rname} lasted {run.duration:.1f} s"
    if not ends:
        assert res.error == "compile error" and not res.runs
    # no harm done
    assert not _uid_processes(hostile_sb.uid, host.victim_pid), "a process of the sandbox survived"
    assert host.sentinel.read_text() == "untouched\n"
    assert not host.host_tmp_file.exists()
    assert host.hits == [], f"a listener of the host was reached: {host.hits}"
    assert host.victim_alive(), "the victim process was killed"


def _all_text(res) -> str:
    parts = [res.build.log if res.build else ""]
    for run in res.runs.values():
        parts += [run.stdout, run.stderr, repr(run.figures)]
    parts += [v.message for v in res.verdicts]
    return "\n".join(parts)


def test_secrets_stay_hidden_at_run_time(graded, host):
    res, _ = graded("read_secrets")
    text = _all_text(res)
    assert "/etc/shadow: cannot open" in text, text[:2000]      # it really tried
    for marker in (host.marker_other, host.marker_grader):
        assert marker not in text
    assert "Run one lab program under observation" not in text   # the grader's own source
    assert "BEGIN SOLUTION" not in text                          # the reference solution
    shadow = Path("/etc/shadow").read_text().splitlines()[0]
    assert shadow not in text
    stdout = res.runs["plain"].stdout
    assert f"{host.dir}/: cannot list" in stdout and "/home/: cannot list" in stdout
    assert "/sys/fs/cgroup/memory/memory.limit_in_bytes: cannot open" in stdout


def test_writes_outside_the_work_folder_fail(graded, host):
    res, _ = graded("write_outside")
    out = res.runs["plain"].stdout
    for target in (str(host.sentinel), str(ROOT / "Makefile"), "/etc/passwd", "/usr/evil", "/evil"):
        assert f"{target}: cannot open" in out, out
    assert not (ROOT / "evil").exists()
    assert host.sentinel.read_text() == "untouched\n"


def test_signals_reach_nothing_outside(graded, host):
    res, _ = graded("signal_others")
    out = res.runs["plain"].stdout
    assert f"kill(victim {host.victim_pid}): -1" in out, out
    assert host.victim_alive()
    assert "other pids signalled: " in out


def test_no_network(graded, host):
    res, _ = graded("network")
    out = res.runs["plain"].stdout
    assert "tcp 127.0.0.1:" in out and ": -1" in out, out
    assert "abstract unix" in out
    assert host.hits == []


def test_leftover_process_is_killed(graded, hostile_sb, host):
    res, _ = graded("leftover")
    for run in res.runs.values():
        assert run.duration < 2.5, run.duration
    assert not _uid_processes(hostile_sb.uid, host.victim_pid)


@pytest.mark.parametrize("name", ["include_shadow", "include_student", "include_solution"])
def test_compile_errors_leak_nothing(name, graded, host):
    res, _ = graded(name)
    assert res.error == "compile error"
    log = res.build.log
    assert host.marker_other not in log and "BEGIN SOLUTION" not in log
    assert "No such file or directory" in log, log
    assert Path("/etc/shadow").read_text().splitlines()[0] not in log


def test_endless_compilations_are_stopped(graded):
    for name in ("include_zero", "include_forever"):
        res, elapsed = graded(name)
        assert "the compilation was stopped" in res.build.log, res.build.log[-2000:]
        assert elapsed < LIMITS.compile_s + 10


def _student_tree(tmp_path: Path, files: dict) -> Path:
    for lab, text in files.items():
        (tmp_path / "src" / lab).mkdir(parents=True)
        (tmp_path / "src" / lab / f"{lab}.c").write_text(text)
    return tmp_path / "src"


def test_labs_compiled_together_keep_their_own_logs(hostile_sb, session_build, tmp_path):
    """A batch compiles all of a student's labs in one sandboxed make; each lab still
    gets its own verdict and only its own compiler output."""
    src = _student_tree(tmp_path, {
        "faults": (ROOT / "labs" / "faults" / "faults.c").read_text(),
        "cow": "int main(void) { return undeclared_in_cow; }\n",
        "maps": "int main(void) { int unused_in_maps; return 0; }\n",
    })
    (src / "numa" / "numa.c").mkdir(parents=True)      # a folder, not a file: named, not compiled
    build = _seed_build(session_build, tmp_path / "build")
    res = hostile_sb.build_many(ROOT, ["faults", "cow", "maps", "numa"], build, src,
                                ldlibs={"faults": "", "cow": "", "maps": ""})
    assert list(res) == ["faults", "cow", "maps", "numa"]
    assert res["faults"].ok and res["maps"].ok and not res["cow"].ok and not res["numa"].ok
    assert "undeclared_in_cow" in res["cow"].log and "Error" in res["cow"].log
    assert "unused_in_maps" in res["maps"].log
    for lab in ("faults", "maps"):
        assert "undeclared_in_cow" not in res[lab].log, res[lab].log
        assert os.access(res[lab].binary, os.X_OK)
    assert "unused_in_maps" not in res["cow"].log and "unused_in_maps" not in res["faults"].log
    assert "no such file: numa/numa.c (a folder)" in res["numa"].log
    assert not any("memlab-build-" in r.log for r in res.values())    # the marks are gone
    assert not (build / "labs" / "cow" / "cow").exists()


def test_a_limit_met_compiling_together_is_charged_to_its_lab(hostile_sb, session_build, tmp_path,
                                                              host):
    """An endless compilation among several stops the joint make; every lab it left
    unbuilt is compiled again alone: the others pass, the endless one gets the limit."""
    src = _student_tree(tmp_path, {
        "cow": (ROOT / "labs" / "cow" / "cow.c").read_text(),
        "faults": (HOSTILE / "include_forever.c").read_text(),
        "maps": (ROOT / "labs" / "maps" / "maps.c").read_text(),
    })
    build = _seed_build(session_build, tmp_path / "build")
    t0 = time.monotonic()
    res = hostile_sb.build_many(ROOT, ["cow", "faults", "maps"], build, src)
    elapsed = time.monotonic() - t0
    assert res["cow"].ok and res["maps"].ok, (res["cow"].log, res["maps"].log)
    assert not res["faults"].ok
    assert "the compilation was stopped" in res["faults"].log, res["faults"].log[-2000:]
    assert "the compilation was stopped" not in res["cow"].log + res["maps"].log
    assert elapsed < 2 * LIMITS.compile_s + 15
    assert not _uid_processes(hostile_sb.uid, host.victim_pid)


def test_a_lab_flooding_warnings_does_not_cut_another_labs_log(hostile_sb, session_build, tmp_path):
    """Past the output kept of one run, a later lab's log would be lost: each is then
    compiled alone, with its own output kept."""
    # ~360 KiB of warnings from one small function: cheap to compile (the hostile
    # sandbox allows 2 s of CPU), past the 256 KiB one run keeps
    noisy = "".join(f"    int unused_variable_number_{i};\n" for i in range(2000))
    src = _student_tree(tmp_path, {"cow": "int main(void) {\n" + noisy + "    return 0;\n}\n",
                                   "maps": "int main(void) { return undeclared_in_maps; }\n"})
    build = _seed_build(session_build, tmp_path / "build")
    res = hostile_sb.build_many(ROOT, ["cow", "maps"], build, src)
    assert len(res["cow"].log) > sandboxmod.OUTPUT_KEEP // 2
    assert res["cow"].ok and not res["maps"].ok, res["cow"].log[-1000:]
    assert "undeclared_in_maps" in res["maps"].log, res["maps"].log[-500:]


def test_split_build_log():
    mark = "memlab-build-0123"
    text = (f"{mark} cow\ncc cow.c\ncow.c:1: error: x\nmake: *** [Makefile:80: /b/labs/cow/cow] Error 1\n"
            f"{mark} maps\ncc maps.c\n{mark} faults\ncc faults.c\n"
            "make: Target '/b/labs/cow/cow' not remade because of errors.\n")
    logs = sandboxmod._split_build_log(text, mark, ["cow", "maps", "faults"])
    assert logs["cow"] == ("cc cow.c\ncow.c:1: error: x\nmake: *** [Makefile:80: /b/labs/cow/cow] Error 1\n"
                           "make: Target '/b/labs/cow/cow' not remade because of errors.\n")
    assert logs["maps"] == "cc maps.c\n" and logs["faults"] == "cc faults.c\n"
    # a line that only looks like a mark (another word, or more words) stays where it is
    logs = sandboxmod._split_build_log(f"a\n{mark}x maps\n{mark} maps now\n", mark, ["cow", "maps"])
    assert logs == {"cow": f"a\n{mark}x maps\n{mark} maps now\n", "maps": ""}


def test_the_course_library_is_not_remade_when_newer_than_its_sources(tmp_path):
    root = tmp_path / "course"
    (root / "common").mkdir(parents=True)
    (root / "deps").mkdir()
    for f in ("Makefile", "common/a.c", "common/memlab.h", "deps/packages.txt"):
        (root / f).write_text("x\n")
    build = tmp_path / "build"
    lib = build / "libmemlab.a"
    assert not sandboxmod._newer_than_sources(lib, root)        # not built
    (build / "common").mkdir(parents=True)
    later = time.time() + 5
    for f in (lib, build / "common" / "a.o", build / ".deps-build", build / "common" / ".flags"):
        f.write_text("built\n")
        os.utime(f, (later, later))
    assert sandboxmod._newer_than_sources(lib, root)
    for older, than in ((build / "common" / "a.o", root / "common" / "memlab.h"),  # an object
                        (lib, root / "Makefile"),
                        (build / "common" / "a.o", build / "common" / ".flags"),  # other flags

                        (build / ".deps-build", root / "deps" / "packages.txt")):
        os.utime(than, (later + 5, later + 5))
        assert not sandboxmod._newer_than_sources(lib, root), (older, than)
        os.utime(than, (later - 5, later - 5))
        assert sandboxmod._newer_than_sources(lib, root)
    (build / "common" / ".flags").unlink()                      # flags not recorded
    assert not sandboxmod._newer_than_sources(lib, root)
    (build / "common" / ".flags").write_text("built\n")
    os.utime(build / "common" / ".flags", (later, later))
    (build / "common" / "a.o").unlink()
    assert not sandboxmod._newer_than_sources(lib, root)


def test_missing_file_is_named(hostile_sb, session_build, tmp_path):
    (tmp_path / "src" / "faults").mkdir(parents=True)
    (tmp_path / "src" / "faults" / "README").write_text("oops, no C\n")
    build = _seed_build(session_build, tmp_path / "build")
    res = grade_lab(spec.load(ROOT / "labs" / "faults"), ROOT, 1, build_dir=build,
                    labs_src=tmp_path / "src", sandbox=hostile_sb)
    assert res.score == 0 and res.error == "compile error"
    assert all("no such file" in v.message for v in res.verdicts), [v.message for v in res.verdicts]


def test_bwrap_exit_status_becomes_the_signal(hostile_sb, graded):
    res, _ = graded("crash")
    for run in res.runs.values():
        assert run.signal == signal.SIGSEGV and run.exit is None


def test_limits_are_named_with_their_values(graded):
    res, _ = graded("memory_hog")
    assert all(f"memory limit ({LIMITS.memory_mb} MiB)" in r.describe() for r in res.runs.values())
    assert all(r.sandbox["oom_kill"] >= 1 for r in res.runs.values())
    res, _ = graded("fork_bomb")
    assert all(f"process limit ({LIMITS.pids} processes)" in r.describe() for r in res.runs.values())
    res, _ = graded("busy_loop")
    assert all(r.signal == signal.SIGXCPU or r.limit == "time" for r in res.runs.values())
    res, _ = graded("file_flood")
    assert all(r.signal == signal.SIGXFSZ for r in res.runs.values())


def test_cpu_limit_is_sigxcpu(hostile_sb):
    """A busy loop with time to spare on the wall clock meets the CPU-time limit."""
    r = hostile_sb.run(["/bin/sh", "-c", "while :; do :; done"], timeout=60)
    assert r.signal == signal.SIGXCPU and r.limit == "cpu", r
    assert r.describe() == f"stopped: CPU-time limit ({LIMITS.cpu_s} s of CPU), killed by SIGXCPU"
    assert r.info["cpu_s"] >= LIMITS.cpu_s * 0.8      # cpuacct counts a little differently


# ---- the views: what each kind of lab sees ---------------------------------------

def test_ordinary_run_sees_no_sys_and_no_cgroup(hostile_sb):
    r = hostile_sb.run(["/bin/sh", "-c", "id -u; ls /sys; cat /proc/self/cgroup; ls /; echo $$"],
                       timeout=20)
    out = r.output
    assert r.exit != 0 or "cannot access '/sys'" in out
    assert str(hostile_sb.uid) in out.splitlines()[0]
    assert "memory:/\n" in out or "0::/\n" in out        # a cgroup namespace


def test_memcg_lab_gets_its_own_group_and_no_more(hostile_sb):
    script = ("cat /proc/self/cgroup; grep cgroup /proc/self/mountinfo; "
              "d=$(awk '$9 ~ /cgroup/ {print $5; exit}' /proc/self/mountinfo); echo DIR=$d; "
              "mkdir $d/memlab-test-1 && echo MKDIR-OK; rmdir $d/memlab-test-1; "
              "echo 1 > $d/memory.limit_in_bytes 2>/dev/null || echo 1 > $d/memory.max 2>/dev/null "
              "|| echo LIMIT-REFUSED; ls /sys/fs/cgroup/")
    r = hostile_sb.run(["/bin/sh", "-c", script], timeout=20, needs={"memcg"})
    out = r.output
    assert "MKDIR-OK" in out and "LIMIT-REFUSED" in out, out
    line = next(ln for ln in out.splitlines() if ln.startswith("DIR="))
    assert "/memlab-sbx" in line, out          # the run's own group, at its host path
    mounts = [ln for ln in out.splitlines() if " - cgroup" in ln]
    assert len(mounts) == 1, mounts            # that group only


def test_a_cgroup_bomb_meets_the_group_limit(hostile_sb, host):
    """A lab with a delegated group may make a few groups of its own (the oom and cgroup
    labs make one or two), not hundreds: v2 refuses the mkdir past
    cgroup.max.descendants, v1 has no such file, so the sandbox counts them while the
    run goes and stops it past MAX_GROUPS."""
    script = ("d=$(awk '$9 ~ /cgroup/ {print $5; exit}' /proc/self/mountinfo); i=0; "
              "while [ $i -lt 400 ]; do mkdir -p $d/g$i/n || break; i=$((i+1)); done; "
              "echo MADE=$i; sleep 8")
    t0 = time.monotonic()
    r = hostile_sb.run(["/bin/sh", "-c", script], timeout=20, needs={"memcg"})
    took = time.monotonic() - t0
    if hostile_sb.version == 2:
        made = int(next(ln for ln in r.output.splitlines() if ln.startswith("MADE=")).split("=")[1])
        assert made <= sandboxmod.MAX_GROUPS // 2, r.output      # the kernel refused the rest
    else:
        assert r.limit == "cgroups", (r.limit, r.describe(), r.output[-500:])
        assert f"cgroup limit (more than {sandboxmod.MAX_GROUPS} nested groups)" in r.describe()
        assert took < 6, took                   # stopped, not left to sleep
    assert not _uid_processes(hostile_sb.uid, host.victim_pid)
    # and a run that makes a few is left alone
    few = script.replace("400", "4").replace("sleep 8", "sleep 0.6")
    r = hostile_sb.run(["/bin/sh", "-c", few], timeout=20, needs={"memcg"})
    assert r.limit == "" and "MADE=4" in r.output, (r.limit, r.output[-500:])


def test_more_groups_than(tmp_path):
    for i in range(3):
        (tmp_path / f"g{i}" / "n").mkdir(parents=True)
    assert sandboxmod._more_groups_than(str(tmp_path), 5)
    assert not sandboxmod._more_groups_than(str(tmp_path), 6)
    assert not sandboxmod._more_groups_than(str(tmp_path / "missing"), 0)


def test_numa_lab_sees_the_node_topology_read_only(hostile_sb):
    r = hostile_sb.run(["/bin/sh", "-c", "ls /sys/devices/system/node/ && touch "
                        "/sys/devices/system/node/x || echo RO; ls /sys/kernel 2>&1"],
                       timeout=20, needs={"numa2"})
    assert "node0" in r.output and "RO" in r.output and "No such file" in r.output, r.output


# ---- API, flags, refusal ------------------------------------------------------------

def test_slot_is_exclusive(hostile_sb):
    with pytest.raises(SandboxError, match="in use"):
        Sandbox(hostile_sb.slot)


def test_uid_of_an_account_is_refused(monkeypatch):
    class Fake:
        pw_name = "alice"
    monkeypatch.setattr(sandboxmod.pwd, "getpwuid", lambda uid: Fake())
    with pytest.raises(SandboxError, match="alice"):
        Sandbox(299)


def test_refusal_and_unsafe_flag(monkeypatch):
    monkeypatch.setattr(sandboxmod, "available", lambda: (False, "bubblewrap is not installed",
                                                          "apt-get install bubblewrap"))
    with pytest.raises(SandboxError) as e:
        Sandbox(298)
    assert "bubblewrap is not installed" in str(e.value) and "apt-get install" in str(e.value)
    sb = Sandbox(298, unsafe=True)
    assert not sb.active and sb.unsafe and sb.describe()["unsafe"] is True
    assert sb.wrap(["/bin/true"], {}) == ["/bin/true"]
    res = execute("t", ["/bin/true"], sandbox=sb, timeout=5)      # runs as is
    assert res.exit == 0
    sb.close()


def test_execute_with_wrap_of_a_sandbox(hostile_sb, tmp_path):
    res = execute("t", ["/bin/sh", "-c", "id -u; exit 7"], wrap=hostile_sb.wrap, timeout=10)
    assert res.exit == 7 and res.stdout.strip() == str(hostile_sb.uid), (res.stdout, res.stderr)
    assert res.sandbox["uid"] == hostile_sb.uid


@pytest.mark.parametrize("helper", [True, False])
def test_wrapper_sets_uid_limits_and_no_privileges(helper, monkeypatch):
    """The compiled helper and its fallback (sh, then setpriv) do the same."""
    if not helper:
        monkeypatch.setenv("MEMLAB_SANDBOX_NO_HELPER", "1")
    sb = _free_sandbox(LIMITS, 240)
    try:
        assert bool(sb._helper) == helper
        r = sb.run(["/bin/sh", "-c", "id -u; id -G; ulimit -St; ulimit -Ht; ulimit -f; ulimit -n; ulimit -c; "
                    "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status"], timeout=20)
        lines = r.output.split()
        assert r.exit == 0, r.output
        assert lines[:7] == [str(sb.uid), str(sb.gid), str(LIMITS.cpu_s), str(LIMITS.cpu_s + 1),
                             str(LIMITS.fsize_mb * 2048), str(LIMITS.nofile), "0"], r.output
        for cap in ("CapEff:", "CapPrm:"):
            assert lines[lines.index(cap) + 1] == "0000000000000000", r.output
        assert lines[lines.index("NoNewPrivs:") + 1] == "1"
    finally:
        sb.close()


def test_describe_for_results(hostile_sb):
    d = hostile_sb.describe()
    assert d["sandbox"] is True and d["unsafe"] is False and d["uid"] == hostile_sb.uid
    assert d["limits"]["memory_mb"] == LIMITS.memory_mb


def test_run_cgroups_are_removed(hostile_sb):
    hostile_sb.run(["/bin/true"], timeout=10)
    prefix = f"memlab-sbx{hostile_sb.slot}-{os.getpid()}-"
    deadline = time.monotonic() + 5
    while True:
        hostile_sb._retry_graveyard()
        left = [os.path.join(b, e) for b in hostile_sb._bases.values() for e in os.listdir(b)
                if e.startswith(prefix)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left


# ---- cgroup v2: in the QEMU guest (pure v2, nsdelegate) ----------------------------

@pytest.mark.vm
@pytest.mark.skipif(os.environ.get("MEMLAB_SKIP_VM", "") not in ("", "0"), reason="MEMLAB_SKIP_VM is set")
def test_cgroup_v2_in_the_guest():
    """The v2 path (one group, +memory +pids, oom.group, the delegated group with its
    leaf, cgroup.kill): oom, cgroup and numa (two nodes) score full marks sandboxed,
    the fork bomb meets the process limit and the memory hog the memory limit."""
    import json
    from grader import vm
    ok, reason, _ = vm.guest_available()
    if not ok:
        pytest.skip(f"no QEMU guest here: {reason}")
    res = vm.run_in_guest(ROOT, ["/usr/bin/python3", "tests/sandbox_guest.py", "--switch-root",
                                 "/tmp/sbxg", "oom", "cgroup", "numa"], timeout=1800, memory_mb=1536)
    assert res.ok, f"{res.error}\n{res.output[-3000:]}"
    line = next((ln for ln in res.output.splitlines() if ln.startswith("SANDBOX-GUEST ")), None)
    assert line, res.output[-3000:]
    out = json.loads(line.split(" ", 1)[1])
    assert out["available"][0] and out["version"] == 2, out
    for lab in ("oom", "cgroup", "numa"):
        assert out[lab]["score"] == out[lab]["max"] > 0 and not out[lab]["fails"], out[lab]
    for lab in ("oom", "cgroup"):
        for run in out[lab]["runs"].values():
            assert "/memlab-sbx" in (run["cgroup"] or ""), run
    for name, cause in (("fork_bomb", "process limit"), ("memory_hog", "memory limit")):
        assert out[name]["score"] == 0
        assert all(cause in r["described"] for r in out[name]["runs"].values()), out[name]
    assert out["after_labs_processes"] == 0 and out["after_hostile_processes"] == 0
    assert out["left_groups"] == []


# ---- strace runs around the sandbox: the lab cannot reach its own trace ---------------

TAMPER_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int tampered;

static void spoil(const char *path)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        tampered++;
        close(fd);
    }
}

static void scan_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, "strace")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            spoil(p);
        }
    if (d)
        closedir(d);
}

int main(void)
{
    kill(getpid(), SIGCONT);          /* a signal the trace must keep */
    scan_dir(".");
    scan_dir("/tmp");
    DIR *proc = opendir("/proc");     /* strace's -o argument, wherever it runs */
    struct dirent *e;
    while (proc && (e = readdir(proc)) != NULL) {
        char p[300], cmd[8192];
        snprintf(p, sizeof p, "/proc/%s/cmdline", e->d_name);
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, cmd, sizeof cmd - 1);
        close(fd);
        for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(cmd + i) + 1)
            if (strcmp(cmd + i, "-o") == 0 && i + 3 < n)
                spoil(cmd + i + 3);
    }
    printf("tampered %d\n", tampered);
    return 0;
}
"""


def test_lab_cannot_reach_its_trace(hostile_sb, tmp_path):
    """strace runs outside the sandbox, as the grader, around it: the trace file is
    nowhere the lab can see or write (not its work folder, not its /tmp, not in any
    command line it can read), and the trace holds only the lab's own processes."""
    src, binary = tmp_path / "tamper.c", tmp_path / "bin" / "tamper"
    binary.parent.mkdir()
    src.write_text(TAMPER_C)
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(binary.parent, 0o755)
    res = execute("t", [str(binary)], sandbox=hostile_sb, timeout=10, strace=["kill", "openat"])
    assert res.exit == 0, (res.error, res.stdout, res.stderr)
    assert res.stdout.strip() == "tampered 0", res.stdout
    kills = [e for e in res.trace if e["call"] == "kill"]
    assert len(kills) == 1 and "SIGCONT" in kills[0]["args"], res.trace
    lab = kills[0]["pid"]
    assert {e["pid"] for e in res.trace} == {lab}, res.trace      # no wrapper, no bubblewrap
    assert {e["call"] for e in res.trace} <= {"kill", "openat", "sendto", "sendmsg"}
    assert any('"/proc"' in e["args"] for e in res.trace if e["call"] == "openat")


def test_syscall_flood_meets_the_trace_limit(hostile_sb, host, tmp_path, monkeypatch):
    """strace writes outside the sandbox's disk limit: the grader caps its file."""
    from grader import runner
    monkeypatch.setattr(runner, "TRACE_LIMIT", 256 * 1024)
    src, binary = tmp_path / "flood.c", tmp_path / "bin" / "flood"
    binary.parent.mkdir()
    src.write_text('#include <fcntl.h>\nint main(void) { for (;;) open("/nonexistent", O_RDONLY); }\n')
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(binary.parent, 0o755)
    res = execute("t", [str(binary)], sandbox=hostile_sb, timeout=TIMEOUT, strace=["openat"])
    assert res.limit == "trace", (res.limit, res.describe())
    assert "system-call flood" in res.describe()
    assert not _uid_processes(hostile_sb.uid, host.victim_pid)


UNTRACED_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[64 * 1024];

static int child(void *arg)
{
    (void)arg;
    kill(getppid(), SIGCONT);        /* a signal strace would not see */
    return 0;
}

int main(void)
{
    pid_t pid = clone(child, stack + sizeof stack, CLONE_UNTRACED | SIGCHLD, NULL);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    printf("cloned %d\n", pid > 0);
    return 0;
}
"""


@pytest.mark.parametrize("sandboxed", [True, False])
def test_a_child_hidden_from_strace_is_caught(sandboxed, hostile_sb, tmp_path):
    """clone(CLONE_UNTRACED) makes a child strace cannot follow (its kill would go
    unseen): the run is marked, and every check of the lab then fails with why."""
    src, binary = tmp_path / "untraced.c", tmp_path / "bin" / "untraced"
    binary.parent.mkdir()
    src.write_text(UNTRACED_C)
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(binary.parent, 0o755)
    res = execute("t", [str(binary)], sandbox=hostile_sb if sandboxed else None, timeout=10,
                  strace=["kill"])
    assert res.stdout.strip() == "cloned 1", (res.stdout, res.stderr, res.error)
    assert not [e for e in res.trace if e["call"] == "kill"]      # the kill itself went unseen
    assert res.limit == "untraced" and "CLONE_UNTRACED" in res.describe()
    from grader.checks import evaluate
    lab = spec.load(ROOT / "labs" / "oom")
    check = next(c for c in lab.checks if c.name == "adj_picks_the_victim")
    v = evaluate(lab, check, {check.run: res}, {}, {}, {})
    assert v.status == "fail" and "CLONE_UNTRACED" in v.message


def test_the_grader_signals_only_its_own_sandboxed_lab(reference_sb, session_build, tmp_path):
    """A capture that ends a process (labs/oom, 'allocator_done') reaches the lab in the
    sandbox by its host pid, as the grader's descendant."""
    memcg = envmod.feature("memcg")
    if not memcg.ok:    # the lab's kill part needs a memory cgroup of its own
        pytest.skip(f"{memcg.reason} ({memcg.fix})")
    src = (ROOT / "labs" / "oom" / "oom.c").read_text()
    small = src.replace("allocator_len = limit - limit / 8 - limit / 16", "allocator_len = limit / 8")
    (tmp_path / "src" / "oom").mkdir(parents=True)
    (tmp_path / "src" / "oom" / "oom.c").write_text(small)
    build = _seed_build(session_build, tmp_path / "build")
    res = grade_lab(spec.load(ROOT / "labs" / "oom"), ROOT, 2, build_dir=build, sandbox=reference_sb,
                    labs_src=tmp_path / "src")
    if "adj" in res.skipped:
        pytest.skip(f"the adj run cannot run here: {res.skipped['adj'].reason}")
    run, sig = res.runs["adj"], res.values["end_signal"]
    assert run.captures.get("ended") == sig, run.captures.get("ended")
    assert run.figures["allocator_fate"] == f"killed by {sig}"


@pytest.mark.parametrize("how, exit, sig", [("exit(139)", 139, None), ("raise(SIGSEGV)", None, 11)])
def test_a_traced_run_tells_an_exit_of_128_plus_n_from_a_signal(hostile_sb, tmp_path, how, exit, sig):
    """bwrap reports a death by signal n as exit 128+n; strace saw which it was."""
    if not envmod.feature("strace").ok:
        pytest.skip(envmod.feature("strace").reason)
    src, binary = tmp_path / "end.c", tmp_path / "bin" / "end"
    binary.parent.mkdir()
    src.write_text("#include <signal.h>\n#include <stdlib.h>\n"
                   f"int main(void) {{ {how}; return 0; }}\n")
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(binary.parent, 0o755)
    res = execute("t", [str(binary)], sandbox=hostile_sb, timeout=TIMEOUT, strace=["openat"])
    assert (res.exit, res.signal) == (exit, sig), (res.end, res.describe())
