"""What this machine is and can do: the facts expected ranges depend on, and the
features a check may require (each with the reason and the fix when missing).

Every path is read under ``root`` (default "/") so that tests can point the
probes at a fake /proc and /sys tree.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    ok: bool
    reason: str = ""     # why it is missing (shown with SKIP)
    fix: str = ""        # what would give it


def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/"))) as f:
            return f.read()
    except OSError:
        return None


def _bracketed(text: str | None) -> str | None:
    if not text:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def cgroup_memory_version(root: str = "/") -> int | None:
    """1 or 2: which hierarchy holds the memory controller for this process."""
    mounts = _read(root, "/proc/self/mountinfo") or ""
    v1_memory = v2_path = None
    for line in mounts.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, opts = rfields[0], rfields[2]
        if fstype == "cgroup" and "memory" in opts.split(","):
            v1_memory = fields[4]
        elif fstype == "cgroup2" and v2_path is None:
            v2_path = fields[4]
    if v1_memory:
        return 1
    if v2_path:
        ctrl = _read(root, os.path.join(v2_path, "cgroup.controllers")) or ""
        if "memory" in ctrl.split():
            return 2
    return None


def in_container(root: str = "/") -> bool:
    if os.path.exists(os.path.join(root, ".dockerenv")) or \
            os.path.exists(os.path.join(root, "run/.containerenv")):
        return True
    return bool(os.environ.get("container")) and root == "/"


# what a batch driver probed once for all its workers (snapshot() / use_snapshot())
_GIVEN: dict = {}


def snapshot(features: list[str]) -> dict:
    """This machine's facts and these features, probed here, to hand to processes
    that would otherwise each probe them again (batch workers: one per student)."""
    return {"facts": facts(), "features": {n: [f.ok, f.reason, f.fix]
                                           for n in features for f in [feature(n)]}}


def use_snapshot(snap: dict) -> None:
    """Take facts and features from snapshot() instead of probing them (what is not
    in it is still probed when asked for)."""
    _GIVEN.clear()
    if isinstance(snap.get("facts"), dict):
        _GIVEN["facts"] = dict(snap["facts"])
    _GIVEN["features"] = {n: Feature(bool(v[0]), str(v[1]), str(v[2]))
                          for n, v in (snap.get("features") or {}).items()
                          if isinstance(v, list) and len(v) == 3}


def facts(root: str = "/") -> dict:
    """The machine as the checks see it (``env.<name>`` in lab.toml)."""
    if root == "/" and "facts" in _GIVEN:
        return _GIVEN["facts"]
    return _facts(root)


@functools.lru_cache(maxsize=None)
def _facts(root: str = "/") -> dict:
    thp_text = _read(root, "/sys/kernel/mm/transparent_hugepage/enabled")
    pmd = _read(root, "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
    aslr = _read(root, "/proc/sys/kernel/randomize_va_space")
    paranoid = _read(root, "/proc/sys/kernel/perf_event_paranoid")
    nodes = []
    node_dir = os.path.join(root, "sys/devices/system/node")
    if os.path.isdir(node_dir):
        nodes = sorted(int(n[4:]) for n in os.listdir(node_dir)
                       if n.startswith("node") and n[4:].isdigit())
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    return {
        "kernel": platform.release() if root == "/" else "",
        "arch": platform.machine(),
        "glibc": (libc or "").replace("glibc ", ""),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "pmd_size": int(pmd) if pmd and pmd.strip().isdigit() else 2 * 1024 * 1024,
        "thp": _bracketed(thp_text) or "unsupported",
        "thp_defrag": _bracketed(_read(root, "/sys/kernel/mm/transparent_hugepage/defrag")) or "",
        "aslr": int(aslr) if aslr and aslr.strip().isdigit() else -1,
        "cgroup": cgroup_memory_version(root),
        "root": os.geteuid() == 0,
        "container": in_container(root),
        "cpus": os.cpu_count() or 1,
        "numa_nodes": len(nodes) or 1,
        "numa_distances": [[int(x) for x in (_read(root, f"/sys/devices/system/node/node{n}/distance")
                                             or "").split() if x.isdigit()] for n in nodes],
        "zero_page": zero_page_probe() is not False if root == "/" else True,
        "perf_paranoid": int(paranoid) if paranoid and paranoid.strip().lstrip("-").isdigit() else None,
    }


def zero_page_probe() -> bool | None:
    """Does a read of untouched private anonymous memory map the shared zero page?

    Usually yes; some kernels do not (s390 with KVM, or a VM kernel booted with
    pvm_no_zero_page=1): there, reads allocate real pages. None if unknown."""
    import mmap
    page = os.sysconf("SC_PAGE_SIZE")
    n = 512

    def rss_anon():
        text = _read("/", "/proc/self/status") or ""
        for line in text.splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return None
    try:
        m = mmap.mmap(-1, n * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, AttributeError):
        return None
    try:
        before = rss_anon()
        total = 0
        for off in range(0, n * page, page):
            total += m[off]
        after = rss_anon()
    finally:
        m.close()
    if before is None or after is None:
        return None
    return (after - before) < (n * page // 1024) // 2


# The NUMA system calls the numa lab makes, by architecture. A container's default
# seccomp profile refuses some of them with EPERM: Docker's mbind and get_mempolicy
# without CAP_SYS_NICE and move_pages always, podman's move_pages.
NUMA_SYSCALLS = {
    "x86_64": {"get_mempolicy": 239, "mbind": 237, "move_pages": 279},
    "aarch64": {"get_mempolicy": 236, "mbind": 235, "move_pages": 239},
}


def numa_syscall_refused() -> tuple[str, int] | None:
    """(name, errno) of the first NUMA system call that fails with EPERM or ENOSYS
    when this process queries or resets the policy of one of its own pages; None
    when they all work (or this architecture's numbers are not known)."""
    import ctypes
    import errno
    import mmap
    numbers = NUMA_SYSCALLS.get(platform.machine())
    if not numbers:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    page = os.sysconf("SC_PAGE_SIZE")
    m = mmap.mmap(-1, page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    cell = ctypes.c_char.from_buffer(m)
    try:
        m[0] = 1
        addr = ctypes.addressof(cell)
        mode, status = ctypes.c_int(0), ctypes.c_int(0)
        pages = (ctypes.c_void_p * 1)(addr)
        calls = {
            # get_mempolicy(&mode, NULL, 0, NULL, 0): this thread's policy
            "get_mempolicy": (ctypes.byref(mode), None, ctypes.c_ulong(0), None, ctypes.c_ulong(0)),
            # mbind(page, size, MPOL_DEFAULT, NULL, 0, 0): the page's policy reset
            "mbind": (ctypes.c_void_p(addr), ctypes.c_ulong(page), ctypes.c_int(0), None,
                      ctypes.c_ulong(0), ctypes.c_uint(0)),
            # move_pages(0, 1, {page}, NULL, &status, 0): which node holds the page
            "move_pages": (ctypes.c_int(0), ctypes.c_ulong(1), pages, None, ctypes.byref(status),
                           ctypes.c_int(0)),
        }
        for name, args in calls.items():
            if libc.syscall(ctypes.c_long(numbers[name]), *args) == -1 and \
                    ctypes.get_errno() in (errno.EPERM, errno.ENOSYS):
                return name, ctypes.get_errno()
        return None
    finally:
        del cell
        m.close()


def _runs(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def feature(name: str) -> Feature:
    """Probe one feature a run or check can require (cached for the grader's life)."""
    given = _GIVEN.get("features", {}).get(name)
    return given if given is not None else _feature(name)


@functools.lru_cache(maxsize=None)
def _feature(name: str) -> Feature:
    f = facts()
    if name == "thp":
        if f["thp"] in ("always", "madvise"):
            return Feature(True)
        if f["thp"] == "unsupported":
            return Feature(False, "this kernel has no transparent huge pages",
                           "use a kernel built with CONFIG_TRANSPARENT_HUGEPAGE")
        return Feature(False, f"transparent huge pages are off (mode '{f['thp']}')",
                       "as root: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled")
    if name == "aslr":
        if f["aslr"] >= 2:
            return Feature(True)
        return Feature(False, f"address-space randomisation is {'off' if f['aslr'] == 0 else 'partial'}"
                       f" (kernel.randomize_va_space={f['aslr']})",
                       "as root: sysctl -w kernel.randomize_va_space=2")
    if name == "setarch":
        if not shutil.which("setarch"):
            return Feature(False, "setarch is not installed", "apt-get install util-linux")
        if not _runs(["setarch", platform.machine(), "-R", "true"]):
            return Feature(False, "personality(ADDR_NO_RANDOMIZE) is refused here",
                           "in a container, run it with --security-opt seccomp=unconfined")
        return Feature(True)
    if name in ("strace", "strace_seccomp"):
        if not shutil.which("strace"):
            return Feature(False, "strace is not installed", "apt-get install strace")
        if not _runs(["strace", "-qq", "-o", "/dev/null", "true"]):
            return Feature(False, "ptrace is refused here, so strace cannot run",
                           "in a container, run it with --cap-add SYS_PTRACE "
                           "(or --security-opt seccomp=unconfined)")
        if name == "strace":
            return Feature(True)
        # strace 5.3+ stops a traced lab only at the calls it traces; an older one at
        # every call (slower, the same trace)
        if not _runs(["strace", "--seccomp-bpf", "-f", "-qq", "-o", "/dev/null", "true"]):
            return Feature(False, "this strace has no --seccomp-bpf (older than 5.3): a traced "
                           "lab stops at every system call, which is slower",
                           "install strace 5.3 or newer")
        return Feature(True)
    if name == "memcg":
        from . import cgroup
        ok, reason, fix = cgroup.probe()
        return Feature(ok, reason, fix)
    if name == "cgroup_v2":
        if f["cgroup"] == 2:
            return Feature(True)
        return Feature(False, "this machine's memory controller is on cgroup v1 (per-group "
                       "pressure, memory.peak and memory.events are v2 files)",
                       "boot with systemd.unified_cgroup_hierarchy=1, or make lab-<lab> VM=1 "
                       "(a QEMU guest with pure cgroup v2)")
    if name == "psi":
        if _read("/", "/proc/pressure/memory") is not None:
            return Feature(True)
        return Feature(False, "this kernel reports no pressure stall information (PSI)",
                       "boot with psi=1 (CONFIG_PSI)")
    if name == "numa_syscalls":
        refused = numa_syscall_refused()
        if refused is None:
            return Feature(True)
        call, err = refused
        if err == 38:  # ENOSYS
            return Feature(False, f"this kernel has no NUMA support ({call}() is not implemented)",
                           "make lab-numa VM=1 runs it in a QEMU guest with two nodes")
        return Feature(False, f"the NUMA system calls are refused here ({call}() fails with EPERM: "
                       "a container's seccomp profile)",
                       "in a container, run it with --security-opt seccomp=unconfined "
                       "(or --privileged)")
    if name == "numa2":
        if f["numa_nodes"] >= 2:
            return Feature(True)
        return Feature(False, f"this machine has {f['numa_nodes']} NUMA node",
                       "make lab-numa VM=1 runs it in a QEMU guest with two nodes")
    raise KeyError(f"unknown feature '{name}'")


KNOWN_FEATURES = ("thp", "aslr", "setarch", "strace", "strace_seccomp", "memcg", "cgroup_v2", "psi", "numa_syscalls",
                  "numa2")


facts.cache_clear = _facts.cache_clear          # type: ignore[attr-defined]
feature.cache_clear = _feature.cache_clear      # type: ignore[attr-defined]
facts.__wrapped__ = _facts.__wrapped__          # type: ignore[attr-defined]  (uncached)
feature.__wrapped__ = _feature.__wrapped__      # type: ignore[attr-defined]
