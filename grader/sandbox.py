"""The sandbox in which batch grading compiles and runs students' lab programs.

Layers, outermost first (docs/sandbox.md explains each):

1. a fresh cgroup per run, made under the grader's own cgroup: memory (+ no swap)
   and pids limits, CPU accounting (v1: the memory, pids and cpuacct hierarchies;
   v2: one group with +memory +pids, memory.oom.group=1, memory.swap.max=0);
2. /bin/sh, as root, writes its own pid into the run's cgroup.procs files and sets
   the rlimits (CPU time, file size, open files, no core), then execs
3. setpriv: an unprivileged uid of the slot's own (60000 + slot), no groups, no
   capabilities, no new privileges, which execs
4. bubblewrap: new user, pid, network, ipc, uts and cgroup namespaces, a read-only
   view of /usr (and the few /etc files programs need), a new /proc and /dev, a
   private /tmp, the run's work folder (writable) and the lab binary's folder
   (read-only) at the same paths as on the host, nothing else;
5. the grader's own wall-clock timer and output cap (grader/runner.py), plus a
   watch on the size of the work folder.

After the run the whole cgroup is killed (cgroup.kill on v2, a sweep of
cgroup.procs on v1) and removed, and the cgroups' counters say why it ended:
memory limit (the run group's own oom_kill), process limit (pids.events max),
CPU limit (SIGXCPU), file-size limit (SIGXFSZ).

Labs that need it get a delegated cgroup (the run's own memory subtree, owned by
the slot's uid, bound where /proc/self/cgroup and /proc/self/mountinfo say the
lab's cgroup is) or /sys/devices/system/{node,cpu} (NUMA), and nothing more.

API (grader/batch.py codes against it):

    ok, reason, fix = available()
    sb = Sandbox(slot, Limits(memory_mb=768, ...), unsafe=False)
    grade_lab(lab, root, seed, build_dir=..., labs_src=..., sandbox=sb)
    sb.close()
"""

from __future__ import annotations

import errno
import fcntl
import functools
import grp
import hashlib
import os
import pwd
import secrets
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .build import BuildResult, build_lab, library_files, make_env
from .cgroup import key_values

UID_BASE = 60000            # slot n runs as uid/gid UID_BASE + n
MAX_SLOTS = 900
PROBE_UID = UID_BASE + 999  # the uid available() tries the sandbox with
LEAF = "memlab-leaf"        # as in common/cgroup.c and grader/cgroup.py
OUTPUT_KEEP = 256 * 1024    # bytes of a compilation's output kept
OUTPUT_LIMIT = 16 * 1024 * 1024
POLL_EVERY = 0.25           # seconds between two looks at the work folder's size
KILL_WAIT = 3.0             # seconds a killed group may take to empty
SANDBOX_FAIL = 125          # the exit status of the wrapper when it cannot set up

# the wrapper that runs as root: join the run's cgroups, set the rlimits, exec setpriv
# (a shell, not Python's preexec_fn, which is not thread-safe)
_JOIN = r'''n=$1; shift
while [ "$n" -gt 0 ]; do
  echo $$ > "$1" || { echo "memlab-sandbox: cannot join the cgroup $1" >&2; exit 125; }
  shift; n=$((n-1))
done
ulimit -S -t "$1" && ulimit -H -t "$2" && ulimit -f "$3" && ulimit -n "$4" && ulimit -c 0 ||
  { echo "memlab-sandbox: cannot set the resource limits" >&2; exit 125; }
shift 4
exec "$@"'''

# The same in one small static program, compiled once per sandbox when a C compiler
# is at hand (it always is where labs are compiled): one exec instead of two (sh and
# setpriv), which is most of what the chain costs before bubblewrap.
#   helper N PROCS... CPU_SOFT CPU_HARD FSIZE_BYTES NOFILE UID GID PROGRAM ARGS...
_HELPER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static int fail(const char *what, const char *arg)
{
    fprintf(stderr, "memlab-sandbox: %s %s\n", what, arg);
    return 125;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return fail("usage:", "helper N PROCS... CPU_SOFT CPU_HARD FSIZE NOFILE UID GID PROGRAM...");
    int n = atoi(argv[1]), i = 2;
    if (n < 0 || argc < i + n + 7)
        return fail("bad arguments", "");
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (int k = 0; k < n; k++, i++) {
        int fd = open(argv[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, pid, strlen(pid)) < 0)
            return fail("cannot join the cgroup", argv[i]);
        close(fd);
    }
    struct rlimit cpu = {strtoul(argv[i], 0, 10), strtoul(argv[i + 1], 0, 10)};
    rlim_t fsize = strtoull(argv[i + 2], 0, 10), nofile = strtoul(argv[i + 3], 0, 10);
    struct rlimit fs = {fsize, fsize}, nf = {nofile, nofile}, core = {0, 0};
    uid_t uid = (uid_t)strtoul(argv[i + 4], 0, 10);
    gid_t gid = (gid_t)strtoul(argv[i + 5], 0, 10);
    i += 6;
    if (setrlimit(RLIMIT_CPU, &cpu) || setrlimit(RLIMIT_FSIZE, &fs) ||
        setrlimit(RLIMIT_NOFILE, &nf) || setrlimit(RLIMIT_CORE, &core))
        return fail("cannot set the resource limits", "");
    for (int c = 0; c <= 63; c++)
        prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    if (uid == 0 || gid == 0 || setgroups(0, NULL) || setresgid(gid, gid, gid) ||
        setresuid(uid, uid, uid) || getuid() != uid || geteuid() != uid)
        return fail("cannot switch to the sandbox's uid", argv[i - 2]);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return fail("cannot set no_new_privs", "");
    execv(argv[i], argv + i);
    return fail("cannot run", argv[i]);
}
"""

# what each limit's verdict says
LIMIT_NAMES = {"memory": "memory limit", "pids": "process limit", "cpu": "CPU-time limit",
               "fsize": "file-size limit", "disk": "disk limit", "cgroups": "cgroup limit"}
MAX_GROUPS = 32     # nested groups a lab may make in its delegated group (v2: cgroup.max.descendants)


class SandboxError(Exception):
    """The sandbox cannot be set up; str() names the cause and the fix."""


@dataclass
class Limits:
    memory_mb: int = 768        # memory of the whole run (all its processes), no swap
    pids: int = 64              # processes and threads at once
    cpu_s: int = 60             # CPU seconds per process (SIGXCPU, then SIGKILL 1 s later)
    fsize_mb: int = 64          # largest file a process may write (SIGXFSZ)
    nofile: int = 256           # open descriptors per process
    tmp_mb: int = 64            # the private /tmp (memory-backed, counted in memory_mb)
    disk_mb: int = 512          # everything in the run's work folder together
    files: int = 10000          # entries in the run's work folder
    compile_s: float = 120.0    # wall clock for one compilation


# ---------------------------------------------------------------------------------
# cgroups

def _newer_than_sources(lib: Path, root: Path) -> bool:
    """Are the course's library, its objects and the build's dependency stamp newer than
    everything they are made from? (What make would decide, without starting make: a
    batch seeds every student's build folder with them. When in doubt, no: make runs.
    The flags they were compiled with are make's to compare (build/common/.flags): a
    library made with other flags has a newer record than its objects.)"""
    build = lib.parent
    try:
        sources = [root / "Makefile", build / "common" / ".flags", *(root / "common").glob("*.[ch]")]
        newest = max(p.stat().st_mtime_ns for p in sources)
        objects = [build / "common" / f"{c.stem}.o" for c in (root / "common").glob("*.c")]
        if any(o.stat().st_mtime_ns < newest for o in [lib, *objects]):
            return False
        return (build / ".deps-build").stat().st_mtime_ns >= (root / "deps" / "packages.txt").stat().st_mtime_ns
    except (OSError, ValueError):
        return False


def _split_build_log(text: str, mark: str, labs: list[str]) -> dict:
    """make's output for several labs, one log per lab: the Makefile prints a line
    "<mark> <lab>" (BUILD_MARK) before each lab's compilation; make's closing
    "Target ... not remade" lines go to the lab they name."""
    logs = {lab: [] for lab in labs}
    current = labs[0]
    for line in text.splitlines(keepends=True):
        word = line.split()
        if len(word) == 2 and word[0] == mark and word[1] in logs:
            current = word[1]
            continue
        named = next((lab for lab in labs if line.startswith("make: ") and f"/{lab}/{lab}'" in line),
                     None)
        logs[named or current].append(line)
    return {lab: "".join(lines) for lab, lines in logs.items()}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _own_cgroups(proc: str = "/proc/self") -> dict:
    """{"version": 1|2, controller or "unified": directory of our own cgroup}."""
    cg = _read(f"{proc}/cgroup") or ""
    mi = _read(f"{proc}/mountinfo") or ""
    v1: dict[str, str] = {}
    v2 = None
    for line in cg.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        for c in parts[1].split(","):
            if c:
                v1[c] = parts[2]
    mounts_v1: dict[str, tuple[str, str]] = {}
    mount_v2 = None
    for line in mi.splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3:
            continue
        root, mnt, fstype, opts = f[3], f[4], r[0], r[2].split(",")
        if fstype == "cgroup":
            for c in opts:
                if c in ("memory", "pids", "cpuacct") and c not in mounts_v1:
                    mounts_v1[c] = (root, mnt)
        elif fstype == "cgroup2" and mount_v2 is None:
            mount_v2 = (root, mnt)

    def join(mount, path):
        root, mnt = mount
        if root != "/" and path.startswith(root):
            path = path[len(root):]
        return (mnt + path).rstrip("/") or "/"

    if "memory" in mounts_v1 and "memory" in v1:
        out = {"version": 1, "memory": join(mounts_v1["memory"], v1["memory"])}
        for c in ("pids", "cpuacct"):
            if c in mounts_v1 and c in v1:
                out[c] = join(mounts_v1[c], v1[c])
        return out
    if mount_v2 and v2 is not None:
        return {"version": 2, "unified": join(mount_v2, v2)}
    return {}


def _enable_v2(base: str, controllers=("memory", "pids")) -> None:
    """Let base give its children these controllers (moving its processes into a
    leaf first: a v2 group that holds processes cannot)."""
    ctrl = os.path.join(base, "cgroup.subtree_control")
    have = (_read(ctrl) or "").split()
    want = " ".join("+" + c for c in controllers if c not in have)
    if not want:
        return
    try:
        _write(ctrl, want)
        return
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise SandboxError(f"cannot enable {want} in {ctrl}: {e.strerror}") from None
    leaf = os.path.join(base, LEAF)
    os.makedirs(leaf, exist_ok=True)
    for _ in range(10):
        pids = (_read(os.path.join(base, "cgroup.procs")) or "").split()
        if not pids:
            break
        for pid in pids:
            try:
                _write(os.path.join(leaf, "cgroup.procs"), pid)
            except OSError:
                pass
    try:
        _write(ctrl, want)
    except OSError as e:
        raise SandboxError(f"cannot enable {want} in {ctrl} ({e.strerror}): its processes "
                           f"could not all be moved to {LEAF}") from None


def _procs(d: str) -> list[int]:
    return [int(x) for x in (_read(os.path.join(d, "cgroup.procs")) or "").split() if x.isdigit()]


def _more_groups_than(d: str, limit: int) -> bool:
    """Are there more than `limit` cgroups under d (d not counted)? Stops counting there."""
    n = 0
    stack = [d]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        n += 1
                        if n > limit:
                            return True
                        stack.append(e.path)
        except OSError:
            continue
    return False


def _subdirs(d: str) -> list[str]:
    """d and every cgroup under it, deepest first."""
    out = []
    try:
        for e in os.scandir(d):
            if e.is_dir(follow_symlinks=False):
                out += _subdirs(e.path)
    except OSError:
        pass
    return out + [d]


def _kill_tree(d: str, version: int, deadline: float) -> bool:
    """Kill every process in group d and under it; True when all are gone."""
    if version == 2 and os.path.exists(os.path.join(d, "cgroup.kill")):
        try:
            _write(os.path.join(d, "cgroup.kill"), "1")
        except OSError:
            pass
    delay = 0.0005
    while True:
        alive = False
        for sub in _subdirs(d):
            for pid in _procs(sub):
                alive = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _rmdir_tree(d: str) -> list[str]:
    """Remove d and its sub-groups; the ones still busy are returned."""
    left = []
    for sub in _subdirs(d):
        try:
            os.rmdir(sub)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(sub)
    return left


# ---------------------------------------------------------------------------------
# is it possible here?

def _userns_problem() -> str:
    if (_read("/proc/sys/user/max_user_namespaces") or "1").strip() == "0":
        return "user namespaces are disabled (user.max_user_namespaces = 0)"
    if (_read("/proc/sys/kernel/unprivileged_userns_clone") or "1").strip() == "0":
        return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
    if (_read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") or "0").strip() == "1":
        return ("AppArmor restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns = 1)")
    return ""


def _cgroup_problem() -> tuple[str, str]:
    own = _own_cgroups()
    if not own:
        return "no memory cgroup controller is mounted", "mount the cgroup filesystem (v1 memory + pids, or v2)"
    if own["version"] == 1:
        if "pids" not in own:
            return "the pids cgroup controller (v1) is not mounted", "mount -t cgroup -o pids none /sys/fs/cgroup/pids"
        for c in ("memory", "pids"):
            if not os.access(own[c], os.W_OK):
                return f"the cgroup {own[c]} is not writable", "run the grader as root"
        return "", ""
    base = own["unified"]
    if os.path.basename(base) == LEAF:
        base = os.path.dirname(base)
    ctrls = (_read(os.path.join(base, "cgroup.controllers")) or "").split()
    missing = [c for c in ("memory", "pids") if c not in ctrls]
    if missing:
        return (f"the cgroup {base} lacks the {' and '.join(missing)} controller(s)",
                "enable them in the parent's cgroup.subtree_control, or run the grader in a "
                "cgroup delegated with +memory +pids (systemd-run --scope -p Delegate=yes ...)")
    if not os.access(base, os.W_OK):
        return f"the cgroup {base} is not writable", "run the grader as root"
    return "", ""


_CHECKED = False


def checked_by_parent() -> None:
    """A batch worker: the driver that started it found the sandbox working a moment
    ago (available()), so the worker does not try a run of its own again."""
    global _CHECKED
    _CHECKED = True


def available() -> tuple[bool, str, str]:
    """Can student code be sandboxed here? (ok, reason, fix). Cached: it tries a run."""
    if _CHECKED:
        return True, "", ""
    return _available()


@functools.lru_cache(maxsize=None)
def _available() -> tuple[bool, str, str]:
    unsafe = "or grade without a sandbox (--unsafe; the results then say so)"
    if os.geteuid() != 0:
        return (False, f"the grader is not root (uid {os.geteuid()}): it cannot give student code "
                "an unprivileged uid of its own or create cgroups", f"run it as root (sudo), {unsafe}")
    for tool, pkg in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if not shutil.which(tool):
            return False, f"{tool} is not installed", f"apt-get install {pkg}, {unsafe}"
    why = _userns_problem()
    if why:
        return False, why, f"allow them (sysctl), {unsafe}"
    why, fix = _cgroup_problem()
    if why:
        return False, why, f"{fix}, {unsafe}"
    try:
        probe = Sandbox(PROBE_UID - UID_BASE, Limits(memory_mb=64, pids=16, cpu_s=5), _probe=True)
    except SandboxError as e:
        return False, str(e), unsafe
    try:
        res = probe.run(["/bin/true"], timeout=20)
    except (OSError, SandboxError) as e:
        return False, f"a trial run in the sandbox failed: {e}", unsafe
    finally:
        probe.close()
    if res.exit != 0:
        text = res.output.strip().splitlines()
        return (False, "a trial run in the sandbox failed: " + (text[-1] if text else res.describe()),
                "allow unprivileged user namespaces for bubblewrap, " + unsafe)
    return True, "", ""


# ---------------------------------------------------------------------------------
# one run

@dataclass
class CommandResult:
    """A command run in the sandbox with its output captured (a compilation)."""
    argv: list[str]
    exit: int | None = None
    signal: int | None = None
    limit: str = ""              # time, output, memory, pids, cpu, fsize, disk
    limit_text: str = ""
    error: str = ""
    output: str = ""
    out_bytes: int = 0
    duration: float = 0.0
    info: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.error:
            return self.error
        if self.limit_text:
            return self.limit_text
        if self.signal:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exited with status {self.exit}"


@dataclass
class _Run:
    name: str
    workdir: str
    needs: frozenset
    groups: dict                 # hierarchy -> host directory of the run's group
    procs: list[str]             # cgroup.procs files the wrapper joins
    binds_ro: list[tuple[str, str]]
    binds_rw: list[tuple[str, str]]
    fsize_mb: int
    delegate: str = ""           # the group bound writable for the lab (memcg labs)
    handshake: tuple | None = None   # v2 delegation: (info_r, info_w, block_r, block_w)
    next_poll: float = 0.0
    t0: float = 0.0
    cwd: str = ""


_HELPER: list = []
_SUBREAPER: set = set()


def _subreaper() -> None:
    """Make this process a child subreaper (once per process): the sandbox's orphans
    then come back to the process that reaps them in end_run(), not to an ancestor."""
    if os.getpid() in _SUBREAPER:
        return
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)     # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass
    _SUBREAPER.add(os.getpid())


def _compiled_helper() -> str | None:
    """The wrapper of _HELPER_C, compiled once (per machine and source) into
    $TMPDIR/memlab-sandbox-helper-<hash>/, a folder of root's that nobody else may
    write (checked before every use: root executes it); None without a C compiler."""
    if _HELPER:
        return _HELPER[0]
    h = hashlib.sha256(_HELPER_C.encode()).hexdigest()[:16]
    d = os.path.join(tempfile.gettempdir(), f"memlab-sandbox-helper-{h}")
    exe = os.path.join(d, "memlab-sandbox")

    def trusted(path: str, mode_mask: int) -> bool:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return st.st_uid == 0 and not st.st_mode & mode_mask and not stat.S_ISLNK(st.st_mode)

    if not (trusted(d, 0o077) and trusted(exe, 0o022)):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError:
            pass
        if not trusted(d, 0o077):           # someone else's, or not a folder: a private one
            d = tempfile.mkdtemp(prefix="memlab-sandbox-helper-")
            exe = os.path.join(d, "memlab-sandbox")
        cc = shutil.which("cc") or shutil.which("gcc")
        built = None
        if cc:
            src, out = os.path.join(d, f"helper-{os.getpid()}.c"), os.path.join(d, f".new-{os.getpid()}")
            with open(src, "w") as f:
                f.write(_HELPER_C)
            for static in (["-static"], []):
                try:
                    p = subprocess.run([cc, "-O2", *static, "-o", out, src], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
                except (OSError, subprocess.SubprocessError):
                    break
                if p.returncode == 0:
                    os.chmod(out, 0o700)
                    os.replace(out, exe)         # atomic: another grader may do the same
                    built = exe
                    break
            for f in (src, out):
                try:
                    os.unlink(f)
                except OSError:
                    pass
        exe = built
    _HELPER.append(exe)
    return exe


def _sig_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


class Sandbox:
    """One parallel slot: its own uid, a fresh cgroup for each run (see the module doc)."""

    def __init__(self, slot: int, limits: Limits | None = None, *, unsafe: bool = False,
                 _probe: bool = False):
        if not isinstance(slot, int) or not (0 <= slot < MAX_SLOTS or (_probe and slot == 999)):
            raise SandboxError(f"slot {slot!r} is out of range (0..{MAX_SLOTS - 1})")
        self.slot = slot
        self.limits = limits or Limits()
        self.uid = self.gid = UID_BASE + slot
        self.unsafe = False
        self.reason = ""
        self.closed = False
        self._run: _Run | None = None
        self._seq = 0
        self._graveyard: list[str] = []
        self._stage: str | None = None
        self._course: dict = {}
        self._bin_cache: dict = {}
        self._libs: set = set()
        self._lock: int | None = None
        if not _probe:
            ok, reason, fix = available()
            if not ok:
                if not unsafe:
                    raise SandboxError(f"the sandbox cannot run here: {reason}" + (f" (fix: {fix})" if fix else ""))
                self.unsafe, self.reason = True, reason
        self.active = not self.unsafe
        if not self.active:
            return
        for who, db in (("user", pwd.getpwuid), ("group", grp.getgrgid)):
            try:
                name = db(self.uid).__getattribute__("pw_name" if who == "user" else "gr_name")
            except KeyError:
                continue
            raise SandboxError(f"the sandbox uid/gid {self.uid} belongs to the {who} '{name}' on this "
                               f"machine: student code must never run as an account that owns files "
                               f"(fix: pick another slot, or remove that {who})")
        own = _own_cgroups()
        if not own:
            raise SandboxError("no memory cgroup controller is mounted (fix: mount cgroups, or --unsafe)")
        self.version = own["version"]
        if self.version == 1:
            self._bases = {c: own[c] for c in ("memory", "pids", "cpuacct") if c in own}
        else:
            base = own["unified"]
            if os.path.basename(base) == LEAF:
                base = os.path.dirname(base)
            _enable_v2(base)
            self._bases = {"unified": base}
        self.bwrap = shutil.which("bwrap")
        self.setpriv = shutil.which("setpriv")
        self.sh = "/bin/sh"
        self._lock = self._take_slot(wait=10.0 if _probe else 0.0)
        self._kill_uid()              # a grader that died may have left some behind
        self._reap_stale_groups()
        self._remove_stale_files()

    # -- the API ------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> dict:
        """What results.json records about how the code ran."""
        if not self.active:
            return {"sandbox": False, "unsafe": True, "reason": self.reason}
        return {"sandbox": True, "unsafe": False, "slot": self.slot, "uid": self.uid,
                "cgroup": self.version, "limits": asdict(self.limits)}

    def begin_run(self, *, workdir: str, binary: str | None = None, needs=(),
                  readonly=(), writable=(), cwd: str | None = None) -> None:
        """Create the next run's cgroups; wrap() then builds its command line.

        readonly / writable: extra folders to show, each a path (shown at the same
        path) or a (host path, path in the sandbox) pair."""
        if self._run is not None:
            self.end_run(None)
        _subreaper()            # bwrap's init, orphaned when bwrap exits, comes back to us
        self._retry_graveyard()
        self._seq += 1
        name = f"memlab-sbx{self.slot}-{os.getpid()}-{self._seq}"
        needs = frozenset(needs or ())
        L = self.limits
        workdir = os.path.realpath(workdir)
        if not self._reachable(os.path.dirname(workdir)):
            raise SandboxError(f"the work folder {workdir} is inside a folder that the sandbox's "
                               f"uid cannot enter (fix: make its parents world-searchable, o+x)")
        os.chown(workdir, self.uid, self.gid)
        os.chmod(workdir, 0o700)
        groups: dict[str, str] = {}
        mem = L.memory_mb * 1024 * 1024
        try:
            for h, base in self._bases.items():
                d = os.path.join(base, name)
                os.mkdir(d)
                groups[h] = d
            if self.version == 1:
                m = groups["memory"]
                _write(os.path.join(m, "memory.limit_in_bytes"), str(mem))
                if os.path.exists(os.path.join(m, "memory.memsw.limit_in_bytes")):
                    _write(os.path.join(m, "memory.memsw.limit_in_bytes"), str(mem))
                _write(os.path.join(groups["pids"], "pids.max"), str(L.pids))
            else:
                u = groups["unified"]
                _write(os.path.join(u, "memory.max"), str(mem))
                for f, v in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if os.path.exists(os.path.join(u, f)):
                        _write(os.path.join(u, f), v)
                _write(os.path.join(u, "pids.max"), str(L.pids))
        except OSError as e:
            for d in groups.values():
                self._graveyard += _rmdir_tree(d)
            raise SandboxError(f"cannot create the run's cgroup {name}: {e}") from None
        delegate = ""
        handshake = None
        join = [os.path.join(d, "cgroup.procs") for d in groups.values()]
        if "memcg" in needs:
            delegate = groups["memory" if self.version == 1 else "unified"]
            files = ["cgroup.procs", "tasks"] if self.version == 1 else \
                ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]
            os.chown(delegate, self.uid, self.gid)
            for f in files:
                if os.path.exists(os.path.join(delegate, f)):
                    os.chown(os.path.join(delegate, f), self.uid, self.gid)
            if self.version == 2:
                os.mkdir(os.path.join(delegate, LEAF))
                for f, v in (("cgroup.max.descendants", "32"), ("cgroup.max.depth", "4")):
                    try:
                        _write(os.path.join(delegate, f), v)    # no cgroup bomb
                    except OSError:
                        pass
                ir, iw = os.pipe()
                br, bw = os.pipe()
                handshake = (ir, iw, br, bw)
        pair = lambda p: (str(p[0]), str(p[1])) if isinstance(p, tuple) else (str(p), str(p))  # noqa: E731
        ro = [pair(p) for p in readonly]
        if binary and "/" in binary and os.path.isfile(binary) and \
                not os.path.realpath(binary).startswith(("/usr/", "/bin/", "/sbin/", "/lib")):
            ro.append(self._binary_view(binary))
        rw = [(workdir, workdir)] + [pair(p) for p in writable]
        fsize = max(L.fsize_mb, 160) if "memcg" in needs else L.fsize_mb
        self._run = _Run(name, workdir, needs, groups, join, ro, rw, fsize, delegate, handshake,
                         time.monotonic() + POLL_EVERY, time.monotonic(), cwd or workdir)

    def wrap(self, argv: list[str], env: dict | None = None) -> list[str]:
        """The command line that runs argv in the sandbox, with exactly env
        (for runner.execute(wrap=...); execute begins the run itself)."""
        if not self.active:
            return list(argv)
        if self._run is None:
            raise SandboxError("Sandbox.wrap() needs a run: begin_run() first (runner.execute "
                               "and Sandbox.run do it)")
        r = self._run
        L = self.limits
        helper = self._helper
        if helper:
            cmd = [helper, str(len(r.procs)), *r.procs, str(L.cpu_s), str(L.cpu_s + 1),
                   str(r.fsize_mb * 1024 * 1024), str(L.nofile), str(self.uid), str(self.gid)]
        else:
            cmd = [self.sh, "-c", _JOIN, "memlab-sandbox", str(len(r.procs)), *r.procs,
                   str(L.cpu_s), str(L.cpu_s + 1), str(r.fsize_mb * 2048), str(L.nofile),
                   self.setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                   "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        cmd += [self.bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup", "--disable-userns", "--die-with-parent",
               "--new-session", "--cap-drop", "ALL", "--hostname", "memlab"]
        cmd += self._system_view()
        cmd += ["--proc", "/proc", "--dev", "/dev",
                "--size", str(L.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        if "numa2" in r.needs or "numa" in r.needs:
            for d in ("/sys/devices/system/node", "/sys/devices/system/cpu"):
                if os.path.isdir(d):
                    cmd += ["--ro-bind", d, d]
        if r.delegate:
            cmd += ["--bind", r.delegate, r.delegate]
        for src, dest in r.binds_ro:
            cmd += ["--ro-bind", src, dest]
        for src, dest in r.binds_rw:
            cmd += ["--bind", src, dest]
        cmd += ["--remount-ro", "/", "--chdir", r.cwd or r.workdir, "--clearenv"]
        for k, v in (env or {}).items():
            if k and "=" not in k and "\0" not in k + str(v):
                cmd += ["--setenv", k, str(v)]
        if r.handshake:
            cmd += ["--info-fd", str(r.handshake[1]), "--block-fd", str(r.handshake[2])]
        return cmd + ["--", *argv]

    def popen_env(self) -> dict:
        """The environment of the wrapper itself (the lab's is set by bwrap)."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

    def pass_fds(self) -> tuple[int, ...]:
        r = self._run
        if r is None or not r.handshake:
            return ()
        return (r.handshake[1], r.handshake[2])

    def started(self, pid: int) -> None:
        """After the sandbox's process started: on v2, with a delegated group, move the
        sandbox into the group's leaf and give the group +memory +pids, before the lab
        runs (its cgroup namespace is rooted at the run's group)."""
        r = self._run
        if r is None or not r.handshake:
            return
        ir, iw, br, bw = r.handshake
        os.close(iw)
        os.close(br)
        try:
            text = b""
            end = time.monotonic() + 10
            while time.monotonic() < end:
                ready, _, _ = select.select([ir], [], [], max(0.0, end - time.monotonic()))
                if not ready:
                    break
                chunk = os.read(ir, 4096)
                if not chunk:
                    break
                text += chunk
            d = r.delegate
            leaf = os.path.join(d, LEAF)
            for pid_ in _procs(d):
                try:
                    _write(os.path.join(leaf, "cgroup.procs"), str(pid_))
                except OSError:
                    pass
            try:
                _write(os.path.join(d, "cgroup.subtree_control"), "+memory +pids")
            except OSError:
                pass
            try:
                os.write(bw, b"1")
            except OSError:
                pass
        finally:
            for fd in (ir, bw):
                try:
                    os.close(fd)
                except OSError:
                    pass
            r.handshake = None

    def poll(self) -> str:
        """Called by the runner while the lab runs: "" or the limit it went past."""
        r = self._run
        if r is None:
            return ""
        now = time.monotonic()
        if now < r.next_poll:
            return ""
        r.next_poll = now + POLL_EVERY
        if self.version == 1:
            oom = key_values(_read(os.path.join(r.groups["memory"], "memory.oom_control"))).get("oom_kill")
            pids = key_values(_read(os.path.join(r.groups["pids"], "pids.events"))).get("max")
        else:
            u = r.groups["unified"]
            oom = key_values(_read(os.path.join(u, "memory.events.local"))).get("oom_kill")
            pids = key_values(_read(os.path.join(u, "pids.events"))).get("max")
        if oom:
            return "memory"
        if pids:
            return "pids"
        if self.version == 1 and r.delegate and _more_groups_than(r.delegate, MAX_GROUPS):
            return "cgroups"        # v1 has no cgroup.max.descendants: counted here
        return "disk" if self._disk_over(r.workdir) else ""

    def end_run(self, res) -> None:
        """Kill what is left of the run, say why it ended (on res: a RunResult or a
        CommandResult), remove its cgroups."""
        r, self._run = self._run, None
        if r is None:
            return
        if r.handshake:
            for fd in r.handshake:
                try:
                    os.close(fd)
                except OSError:
                    pass
        deadline = time.monotonic() + KILL_WAIT
        main = r.groups.get("memory") or r.groups.get("unified")
        empty = _kill_tree(main, self.version, deadline)
        for h, d in r.groups.items():
            if d != main:
                empty = _kill_tree(d, self.version, deadline) and empty
        self._reap_children()
        info = self._counters(r)
        info["cgroup"] = r.name
        info["uid"] = self.uid
        if not empty:
            info["survivors"] = True
        if res is not None:
            self._classify(res, info, r)
        for d in r.groups.values():
            self._graveyard += _rmdir_tree(d)

    def close(self) -> None:
        """Remove whatever the sandbox made (cgroups, staged files)."""
        if self.closed:
            return
        self.closed = True
        if not self.active:
            return
        if self._run is not None:
            self.end_run(None)
        self._kill_uid()
        deadline = time.monotonic() + 5
        while self._graveyard and time.monotonic() < deadline:
            self._retry_graveyard()
            if self._graveyard:
                time.sleep(0.05)
        if self._stage:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
        for d in (f"/tmp/.bubblewrap-{self.uid}", f"/run/user/{self.uid}/.bubblewrap"):
            try:
                os.rmdir(d)
            except OSError:
                pass
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self):
        try:
            if not self.closed and getattr(self, "active", False):
                self.close()
        except Exception:  # noqa: BLE001 - never from a finaliser
            pass

    # -- a whole command (the compilation) -----------------------------------------

    def run(self, argv: list[str], *, timeout: float, cwd: str | None = None,
            env: dict | None = None, readonly=(), writable=(), workdir: str | None = None,
            needs=()) -> CommandResult:
        """Run argv in a fresh sandboxed run, output (stdout and stderr together)
        captured and capped; never raises for what the command does."""
        own_work = workdir is None
        if own_work:
            workdir = tempfile.mkdtemp(prefix="memlab-sbx-work-")
        res = CommandResult(list(argv))
        env = dict(env or {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C",
                            "HOME": "/tmp", "TMPDIR": "/tmp"})
        try:
            self.begin_run(workdir=workdir, needs=needs, readonly=readonly, writable=writable,
                           cwd=cwd)
            self._capture(self.wrap(argv, env), res, timeout)
        finally:
            self.end_run(res)
            if own_work:
                shutil.rmtree(workdir, ignore_errors=True)
        return res

    def _capture(self, cmd: list[str], res: CommandResult, timeout: float) -> None:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=self.popen_env(),
                                    start_new_session=True, pass_fds=self.pass_fds())
        except OSError as e:
            res.error = f"could not start the sandbox: {e.strerror}"
            return
        self.started(proc.pid)
        buf = bytearray()
        total = 0
        deadline = t0 + timeout
        fd = proc.stdout.fileno()
        open_ = True
        while open_:
            now = time.monotonic()
            if now >= deadline:
                res.limit = "time"
                break
            why = self.poll()
            if why:
                res.limit = why
                break
            ready, _, _ = select.select([fd], [], [], min(deadline - now, POLL_EVERY))
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    open_ = False
                    break
                total += len(data)
                if len(buf) < OUTPUT_KEEP:
                    buf += data[: OUTPUT_KEEP - len(buf)]
                if total > OUTPUT_LIMIT:
                    res.limit = "output"
                    break
        if res.limit:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            status = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        proc.stdout.close()
        if status < 0:
            res.signal = -status
        else:
            res.exit = status
        res.duration = time.monotonic() - t0
        res.out_bytes = total
        res.output = buf.decode("utf-8", "replace")
        if total > len(buf):
            res.output += f"\n[... output cut at {OUTPUT_KEEP // 1024} KiB; {total} bytes in all]\n"
        if res.limit == "time":
            res.limit_text = f"stopped at the time limit ({timeout:g} s)"
        elif res.limit == "output":
            res.limit_text = (f"stopped: output flood (over the output limit of "
                              f"{OUTPUT_LIMIT // (1024 * 1024)} MiB)")

    # -- building a lab ----------------------------------------------------------

    def build(self, root: Path, lab: str, build_dir: Path | None = None,
              labs_src: Path | None = None):
        """build.build_lab() in the sandbox: the course's Makefile, common/ and flags
        (never the student's), the course's files read-only (its solutions and its
        grader not even visible), only the lab's output folder writable."""
        return self.build_many(root, [lab], build_dir, labs_src)[lab]

    def build_many(self, root: Path, labs: list[str], build_dir: Path | None = None,
                   labs_src: Path | None = None, ldlibs: dict | None = None) -> dict:
        """build() for several labs of one submission: {lab: BuildResult}.

        They are compiled by one make in one sandboxed run (starting a sandbox and make
        once per lab costs more than compiling a small lab on a machine where process
        creation is slow), its output cut back into one log per lab. If that run meets
        a limit (time, memory, output, ...) or dies, each lab it did not leave built is
        compiled again in a run of its own, so that the limit is charged to the lab
        that meets it, with the same limits as build(). `ldlibs`: each lab's libraries
        (spec.Lab.ldlibs), given to make (else make reads them from lab.toml itself)."""
        root = Path(root).resolve()
        build_dir = Path(build_dir or root / "build").resolve()
        if not self.active:
            return {lab: build_lab(root, lab, build_dir, labs_src) for lab in labs}
        src_tree = Path(labs_src).resolve() if labs_src is not None else root / "labs"
        results: dict = {}
        todo = []
        for lab in labs:
            src = src_tree / lab / f"{lab}.c"
            if src.is_file():
                todo.append(lab)
                continue
            what = "a folder" if src.is_dir() else "a symbolic link to nothing" if src.is_symlink() \
                else "missing"
            results[lab] = BuildResult(False, build_dir / "labs" / lab / lab,
                                       f"error: no such file: {lab}/{lab}.c ({what})")
        if todo:
            why = self._course_library(root, build_dir)
            if why:
                results.update({lab: BuildResult(False, build_dir / "labs" / lab / lab, why)
                                for lab in todo})
            else:
                done, stopped = self._compile(root, todo, build_dir, src_tree, ldlibs or {})
                results.update(done)
                for lab in stopped:         # again, alone: the limit is this lab's own
                    results.update(self._compile(root, [lab], build_dir, src_tree, ldlibs or {})[0])
        return {lab: results[lab] for lab in labs}

    def _course_library(self, root: Path, build_dir: Path) -> str:
        """Build the course's library, trusted code, outside the sandbox if it must be
        (once per build folder): '' or what went wrong."""
        key = str(build_dir)
        lib = build_dir / "libmemlab.a"
        if key in self._libs or _newer_than_sources(lib, root):
            return ""
        try:
            p = subprocess.run(["make", "--no-print-directory", "-C", str(root), f"BUILD={build_dir}",
                                str(lib)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=make_env(), timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            return f"error: cannot build the course's library: {e}"
        if p.returncode != 0:
            return "error: the course's library did not build:\n" + p.stdout.decode("utf-8", "replace")
        self._libs.add(key)
        return ""

    def _compile(self, root: Path, labs: list[str], build_dir: Path, src_tree: Path,
                 ldlibs: dict):
        """One sandboxed make for these labs: ({lab: BuildResult} of those it settled,
        [labs to compile again alone]) - the second list is empty unless the run of
        several labs was stopped."""
        stage = Path(tempfile.mkdtemp(prefix="build-", dir=self._stage_dir()))
        try:
            os.chmod(stage, 0o711)
            b = stage / "b"
            for f in library_files(build_dir):
                dest = b / f.relative_to(build_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, dest)
                except OSError:
                    shutil.copy2(f, dest)
                os.chmod(dest, 0o644)
            ro = list(self._course_view(root))
            ro.append((str(b), str(build_dir)))
            rw = []
            (b / "labs").mkdir(parents=True, exist_ok=True)
            for lab in labs:
                out = b / "labs" / lab
                out.mkdir()
                os.chown(out, self.uid, self.gid)
                os.chmod(out, 0o700)
                ro.append((self._visible_dir(src_tree / lab, stage / "s" / lab), str(src_tree / lab)))
                rw.append((str(out), str(build_dir / "labs" / lab)))
            for d in (b, b / "labs", b / "common"):
                if d.exists():
                    os.chmod(d, 0o755)
            mark = "memlab-build-" + secrets.token_hex(8)
            argv = ["make", "--no-print-directory", "-C", str(root), f"BUILD={build_dir}",
                    f"LABS_SRC={src_tree}", f"BUILD_MARK={mark}"]
            argv += [f"LDLIBS_{lab}={ldlibs[lab]}" for lab in labs if lab in ldlibs]  # no sed
            if len(labs) > 1:
                argv.append("-k")       # a lab that does not compile stops no other
            argv += [str(build_dir / "labs" / lab / lab) for lab in labs]
            work = stage / "w"
            work.mkdir()
            res = self.run(argv, timeout=self.limits.compile_s, cwd=str(root), workdir=str(work),
                           readonly=ro, writable=rw)
            stopped = bool(res.limit or res.error or res.signal)
            if len(labs) > 1 and (stopped or res.out_bytes > OUTPUT_KEEP):
                # stopped, or so much output that later labs' logs were cut: each alone
                return {}, list(labs)
            logs = _split_build_log(res.output, mark, labs)
            results = {}
            for lab in labs:
                target = build_dir / "labs" / lab / lab
                built = b / "labs" / lab / lab
                ok = not stopped and self._regular(built) and (res.exit == 0 or len(labs) > 1)
                log = logs[lab]
                if stopped:
                    log = f"error: the compilation was stopped: {res.describe()}\n" + log
                if ok:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{lab}.new")
                    shutil.copyfile(built, tmp, follow_symlinks=False)
                    os.chmod(tmp, 0o755)
                    os.replace(tmp, target)
                results[lab] = BuildResult(ok, target, log)
            return results, []
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------

    def _stage_dir(self) -> str:
        if self._stage is None:
            base = os.environ.get("MEMLAB_SCRATCH") or None
            self._stage = tempfile.mkdtemp(prefix=f"memlab-sbx{self.slot}-", dir=base)
            os.chmod(self._stage, 0o711)
        return self._stage

    def _reachable(self, path: str) -> bool:
        """Can the slot's uid walk down to path (every folder on the way o+x)?"""
        p = os.path.realpath(path)
        while True:
            try:
                st = os.stat(p)
            except OSError:
                return False
            if not st.st_mode & stat.S_IXOTH and st.st_uid != self.uid:
                return False
            if p == "/":
                return True
            p = os.path.dirname(p)

    @staticmethod
    def _regular(path: Path) -> bool:
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False

    def _binary_view(self, binary: str) -> tuple[str, str]:
        """(host folder, folder in the sandbox) for the lab binary: its folder, at the
        same path, holding a copy of the binary only (whatever the host folder's
        permissions)."""
        binary = os.path.realpath(binary)
        d = os.path.dirname(binary)
        st = os.stat(binary)
        key = (binary, st.st_mtime_ns, st.st_size, st.st_ino)
        staged = self._bin_cache.get(binary)
        if staged is None or staged[0] != key or not os.path.exists(staged[1]):
            sd = os.path.join(self._stage_dir(), "bin-" + hashlib.sha1(d.encode()).hexdigest()[:16])
            os.makedirs(sd, mode=0o755, exist_ok=True)
            os.chmod(sd, 0o755)
            dest = os.path.join(sd, os.path.basename(binary))
            tmp = dest + ".new"
            shutil.copyfile(binary, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, dest)
            self._bin_cache.pop(binary, None)
            self._bin_cache[binary] = (key, sd)
            staged = self._bin_cache[binary]
            while len(self._bin_cache) > 8:     # a batch stages one binary per student and lab
                old = next(iter(self._bin_cache))
                gone = self._bin_cache.pop(old)[1]
                if all(v[1] != gone for v in self._bin_cache.values()):
                    shutil.rmtree(gone, ignore_errors=True)
        return staged[1], d

    def _visible_dir(self, d: Path, stage: Path) -> str:
        """A host folder with d's content that the slot's uid can read: d itself if it
        can, else a copy."""
        if self._reachable(str(d)) and self._readable_tree(d):
            return str(d)
        dest = stage / d.name
        shutil.copytree(d, dest, symlinks=True,
                        ignore=lambda p, names: [n for n in names if not (
                            os.path.isdir(os.path.join(p, n)) or os.path.islink(os.path.join(p, n))
                            or os.path.isfile(os.path.join(p, n)))])
        for dirpath, dirnames, filenames in os.walk(dest):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                fp = os.path.join(dirpath, f)
                if not os.path.islink(fp):
                    os.chmod(fp, 0o644)
        for p in (stage, dest.parent):
            os.chmod(p, 0o755)
        return str(dest)

    @staticmethod
    def _readable_tree(d: Path) -> bool:
        for dirpath, dirnames, filenames in os.walk(d):
            if not os.stat(dirpath).st_mode & stat.S_IROTH:
                return False
            for f in filenames:
                try:
                    if not os.stat(os.path.join(dirpath, f)).st_mode & stat.S_IROTH:
                        return False
                except OSError:
                    pass
        return True

    def _course_view(self, root: Path) -> list[tuple[str, str]]:
        """What make needs of the course, read-only: Makefile, common/, deps/ and each
        lab's lab.toml. Not the reference solutions, the tests or the grader."""
        key = str(root)
        if key in self._course:
            return self._course[key]
        parts = [root / "Makefile", root / "common", root / "deps",
                 *sorted((root / "labs").glob("*/lab.toml"))]
        parts = [p for p in parts if p.exists()]
        if all(self._reachable(str(p)) for p in parts) and \
                all(self._readable_tree(p) if p.is_dir() else os.stat(p).st_mode & stat.S_IROTH
                    for p in parts):
            view = [(str(p), str(p)) for p in parts]
        else:
            stage = Path(tempfile.mkdtemp(prefix="course-", dir=self._stage_dir()))
            os.chmod(stage, 0o755)
            view = []
            for p in parts:
                dest = stage / p.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if p.is_dir():
                    shutil.copytree(p, dest, symlinks=True)
                else:
                    shutil.copy2(p, dest)
                view.append((str(dest), str(p)))
            for dirpath, dirnames, filenames in os.walk(stage):
                os.chmod(dirpath, 0o755)
                for f in filenames:
                    fp = os.path.join(dirpath, f)
                    if not os.path.islink(fp):
                        os.chmod(fp, os.stat(fp).st_mode | 0o444)
        self._course[key] = view
        return view

    @functools.cached_property
    def _system(self) -> list[str]:
        out = ["--ro-bind", "/usr", "/usr"]
        for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(d):
                out += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                out += ["--ro-bind", d, d]
        for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
                  "/etc/localtime"):
            if os.path.exists(f):
                out += ["--ro-bind", f, f]
        return out

    @property
    def _helper(self) -> str | None:
        """The compiled wrapper (see _HELPER_C), or None: then sh and setpriv do its work."""
        if os.environ.get("MEMLAB_SANDBOX_NO_HELPER"):
            return None
        return _compiled_helper()

    def _system_view(self) -> list[str]:
        return list(self._system)

    def _disk_over(self, workdir: str) -> bool:
        """Has the work folder grown past disk_mb or files entries?"""
        L = self.limits
        limit = L.disk_mb * 1024 * 1024
        total = count = 0
        stack = [workdir]
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    count += 1
                    if count > L.files:
                        return True
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if total > limit:
                        return True
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(e.path)
        return False

    def _counters(self, r: _Run) -> dict:
        info: dict = {}
        if self.version == 1:
            m = r.groups["memory"]
            info["oom_kill"] = key_values(_read(os.path.join(m, "memory.oom_control"))).get("oom_kill", 0)
            peak = _read(os.path.join(m, "memory.max_usage_in_bytes"))
            info["peak_mb"] = round(int(peak) / 2 ** 20, 1) if peak and peak.strip().isdigit() else None
            info["pids_max"] = key_values(_read(os.path.join(r.groups["pids"], "pids.events"))).get("max", 0)
            if "cpuacct" in r.groups:
                u = _read(os.path.join(r.groups["cpuacct"], "cpuacct.usage"))
                info["cpu_s"] = round(int(u) / 1e9, 3) if u and u.strip().isdigit() else None
        else:
            u = r.groups["unified"]
            ev = key_values(_read(os.path.join(u, "memory.events.local")) or
                          _read(os.path.join(u, "memory.events")))
            info["oom_kill"] = ev.get("oom_kill", 0)
            peak = _read(os.path.join(u, "memory.peak"))
            info["peak_mb"] = round(int(peak) / 2 ** 20, 1) if peak and peak.strip().isdigit() else None
            pe = key_values(_read(os.path.join(u, "pids.events.local")) or
                          _read(os.path.join(u, "pids.events")))
            info["pids_max"] = pe.get("max", 0)
            cs = key_values(_read(os.path.join(u, "cpu.stat")))
            info["cpu_s"] = round(cs["usage_usec"] / 1e6, 3) if "usage_usec" in cs else None
        return info

    def _classify(self, res, info: dict, r: _Run) -> None:
        """Turn what bwrap and the cgroup say into res.signal / res.limit / res.limit_text."""
        L = self.limits
        text = getattr(res, "stderr", None)
        if text is None:
            text = getattr(res, "output", "")
        # bwrap reports a death by signal n as the exit status 128 + n; a traced run
        # knows which it was (strace saw the lab's process end: runner.RunResult.end)
        end = getattr(res, "end", "") or ""
        if res.exit is not None and 128 < res.exit < 128 + 65 and not res.error and \
                not end.startswith("exited with"):
            res.signal, res.exit = res.exit - 128, None
        if res.exit == SANDBOX_FAIL and "memlab-sandbox:" in (text or ""):
            line = next(ln for ln in text.splitlines() if "memlab-sandbox:" in ln)
            res.error = f"the sandbox could not be set up: {line.split(':', 1)[1].strip()}"
        elif res.exit == 1 and (text or "").startswith("bwrap:") and \
                getattr(res, "main_pid", None) is None:
            res.error = f"the sandbox could not be set up: {text.splitlines()[0]}"
        cause = ""
        if info.get("oom_kill"):
            cause = "memory"
        elif info.get("pids_max"):
            cause = "pids"
        elif res.signal == signal.SIGXCPU or (
                res.signal == signal.SIGKILL and info.get("cpu_s") is not None
                and info["cpu_s"] >= L.cpu_s and res.limit != "time"):
            cause = "cpu"
        elif res.signal == signal.SIGXFSZ:
            cause = "fsize"
        elif isinstance(res, CommandResult) and res.exit and "signal terminated program" in text:
            # a compiler's pass (cc1, as, ld) killed by a limit: gcc names the signal
            if "CPU time limit exceeded" in text:
                cause = "cpu"
            elif "File size limit exceeded" in text:
                cause = "fsize"
        elif res.limit in ("disk", "cgroups"):
            cause = res.limit
        if cause and res.limit in ("", "time", "disk", "memory", "pids", "cgroups"):
            res.limit = cause
            detail = {"memory": f"{L.memory_mb} MiB", "pids": f"{L.pids} processes",
                      "cpu": f"{L.cpu_s} s of CPU", "fsize": f"{r.fsize_mb} MiB per file",
                      "disk": f"{L.disk_mb} MiB or {L.files} files in the work folder",
                      "cgroups": f"more than {MAX_GROUPS} nested groups"}[cause]
            res.limit_text = f"stopped: {LIMIT_NAMES[cause]} ({detail})"
            if res.signal:
                res.limit_text += f", killed by {_sig_name(res.signal)}"
        if hasattr(res, "sandbox"):
            res.sandbox = dict(info)
        elif hasattr(res, "info"):
            res.info = dict(info)

    def _take_slot(self, wait: float) -> int:
        """One grader per slot (its uid) at a time: an flock held while the sandbox lives."""
        d = "/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()
        path = os.path.join(d, f"memlab-sandbox-{self.uid}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        end = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= end:
                    holder = (os.pread(fd, 32, 0) or b"?").decode(errors="replace").strip()
                    os.close(fd)
                    raise SandboxError(f"sandbox slot {self.slot} (uid {self.uid}) is in use by another "
                                       f"grader (pid {holder}) (fix: give each parallel grader its own "
                                       f"slot)") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _kill_uid(self) -> int:
        """Kill every process of the slot's uid (none should exist between runs)."""
        n = 0
        for _ in range(20):
            found = []
            for e in os.listdir("/proc"):
                if not e.isdigit():
                    continue
                try:
                    st = os.stat(f"/proc/{e}")
                except OSError:
                    continue
                if st.st_uid == self.uid:
                    found.append(int(e))
            if not found:
                break
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                    n += 1
                except OSError:
                    pass
            time.sleep(0.01)
        return n

    def _reap_children(self) -> None:
        """Reap our children of the slot's uid: bwrap's init, orphaned to us (a child
        subreaper) when bwrap exits, and killed with it."""
        me = os.getpid()
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            try:
                if os.stat(f"/proc/{e}").st_uid != self.uid:
                    continue
                with open(f"/proc/{e}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            if int(text[text.rfind(")") + 2:].split()[1]) != me:
                continue
            try:
                os.kill(int(e), signal.SIGKILL)
                os.waitpid(int(e), 0)
            except OSError:
                pass

    def _remove_stale_files(self) -> None:
        """Work folders of this slot's uid and this slot's staging folders left by a
        grader that died (we hold the slot's lock: no live grader uses them)."""
        dirs = {tempfile.gettempdir(), os.environ.get("MEMLAB_SCRATCH") or tempfile.gettempdir()}
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    continue
                mine = st.st_uid == self.uid and e.name.startswith(("memlab-run-", "memlab-sbx-work-"))
                staged = st.st_uid == 0 and e.name.startswith(f"memlab-sbx{self.slot}-")
                if (mine or staged) and e.path != self._stage:
                    shutil.rmtree(e.path, ignore_errors=True)

    def _reap_stale_groups(self) -> None:
        """Groups of this slot made by a grader process that is gone."""
        prefix = f"memlab-sbx{self.slot}-"
        for base in self._bases.values():
            try:
                entries = os.listdir(base)
            except OSError:
                continue
            for e in entries:
                if not e.startswith(prefix):
                    continue
                pid = e[len(prefix):].split("-")[0]
                if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                    d = os.path.join(base, e)
                    _kill_tree(d, self.version, time.monotonic() + 1)
                    self._graveyard += _rmdir_tree(d)

    def _retry_graveyard(self) -> None:
        left = []
        for d in self._graveyard:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(d)
        self._graveyard = left


def sandbox_needs(lab) -> frozenset:
    """The features a lab's runs and checks require: what its sandbox must give it."""
    needs = set()
    for run in lab.runs.values():
        needs.update(run.requires)
    for check in lab.checks:
        needs.update(getattr(check, "requires", ()) or ())
    return frozenset(needs)


def cgroup_allowed(sandbox, path) -> bool:
    """May the grader read/clean the cgroup a sandboxed lab named? Only inside its run's group."""
    if sandbox is None or not getattr(sandbox, "active", False):
        return True
    r = sandbox._run
    if r is None or not r.delegate or not isinstance(path, str):
        return False
    real = os.path.realpath(path)
    return real == r.delegate or real.startswith(r.delegate + "/")


__all__ = ["SandboxError", "Limits", "available", "Sandbox", "CommandResult", "sandbox_needs",
           "cgroup_allowed", "UID_BASE"]
