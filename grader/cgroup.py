"""Memory cgroups from the grader's side: where ours is (v1 or v2), the counters
of a lab's group read the same way on both versions, and cleanup of groups a
lab left behind. The rules match common/cgroup.c: a lab's groups live under
the cgroup the process is in; on v2, processes are first moved into a leaf
"memlab-leaf" so that the memory controller can be enabled for children.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CGROUP_ROOT = "/sys/fs/cgroup"
LEAF = "memlab-leaf"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def own_memory_cgroup(proc: str = "/proc/self") -> tuple[int, str] | None:
    """(version, directory) of the memory cgroup of a process, or None."""
    cg = _read(f"{proc}/cgroup") or ""
    mi = _read(f"{proc}/mountinfo") or ""
    v1 = v2 = None
    for line in cg.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            v1 = parts[2]
        elif parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
    for line in mi.splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3:
            continue
        root, mnt, fstype, opts = f[3], f[4], r[0], r[2].split(",")
        if v1 is not None and fstype == "cgroup" and "memory" in opts:
            version, path = 1, v1
        elif v1 is None and v2 is not None and fstype == "cgroup2":
            version, path = 2, v2
        else:
            continue
        if root != "/" and path.startswith(root):
            path = path[len(root):]
        return version, (mnt + path).rstrip("/") or "/"
    return None


def base_dir(version: int, own: str) -> str:
    """Where a lab's groups go: our cgroup, or, for a memlab leaf, its parent."""
    if version == 2 and os.path.basename(own) == LEAF:
        return os.path.dirname(own)
    return own


def key_values(text: str | None) -> dict:
    """"key value" lines (memory.stat, memory.events, pids.events, ...) as {key: int}."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _num(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip()
    if t == "max":
        return 2 ** 63 - 1
    try:
        return int(t)
    except ValueError:
        return None


def valid_group(path: str) -> str | None:
    """The real path of a lab's group, if it is one (under the cgroup mount, named memlab-...)."""
    if not isinstance(path, str) or not path:
        return None
    real = os.path.realpath(path)
    if not real.startswith(CGROUP_ROOT + "/") or not os.path.isdir(real):
        return None
    if "memlab-" not in os.path.basename(real):
        return None
    return real


def counters(path: str) -> dict:
    """The group's memory counters, the same names on v1 and v2 (bytes, counts)."""
    real = valid_group(path)
    if real is None:
        raise ValueError(f"'{path}' is not a memlab cgroup")
    j = lambda f: os.path.join(real, f)  # noqa: E731
    if os.path.exists(j("memory.limit_in_bytes")):
        stat = key_values(_read(j("memory.stat")))
        oom = key_values(_read(j("memory.oom_control")))
        out = {"version": 1, "limit": _num(_read(j("memory.limit_in_bytes"))),
               "usage": _num(_read(j("memory.usage_in_bytes"))),
               "peak": _num(_read(j("memory.max_usage_in_bytes"))),
               "file": stat.get("total_cache"), "anon": stat.get("total_rss"),
               "dirty": stat.get("total_dirty"),
               "oom_kill": oom.get("oom_kill"), "under_oom": oom.get("under_oom"),
               "failcnt": _num(_read(j("memory.failcnt"))), "pressure_some_us": None}
    else:
        stat = key_values(_read(j("memory.stat")))
        events = key_values(_read(j("memory.events")))
        pressure = None
        text = _read(j("memory.pressure"))
        if text:
            for word in text.split():
                if word.startswith("total="):
                    pressure = int(word[6:])
                    break
        out = {"version": 2, "limit": _num(_read(j("memory.max"))),
               "usage": _num(_read(j("memory.current"))), "peak": _num(_read(j("memory.peak"))),
               "file": stat.get("file"), "anon": stat.get("anon"), "dirty": stat.get("file_dirty"),
               "oom_kill": events.get("oom_kill"), "oom": events.get("oom"),
               "max_events": events.get("max"), "pressure_some_us": pressure}
    system = None
    for line in (_read("/proc/pressure/memory") or "").splitlines():
        if line.startswith("some "):
            for word in line.split():
                if word.startswith("total="):
                    system = int(word[6:])
    out["system_pressure_some_us"] = system
    out["path"] = real
    out["procs"] = [int(x) for x in (_read(j("cgroup.procs")) or "").split() if x.isdigit()]
    return out


def destroy(path: str, timeout: float = 3.0) -> bool:
    """Kill what is in a lab's group (and its children) and remove it."""
    real = valid_group(path)
    if real is None:
        return True
    for child in sorted((p for p in Path(real).iterdir() if p.is_dir()), reverse=True):
        destroy(str(child), timeout)
    deadline = time.monotonic() + timeout
    kill = os.path.join(real, "cgroup.kill")
    if os.path.exists(kill):
        try:
            with open(kill, "w") as f:
                f.write("1")
        except OSError:
            pass
    while time.monotonic() < deadline:
        for pid in [int(x) for x in (_read(os.path.join(real, "cgroup.procs")) or "").split() if x.isdigit()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.rmdir(real)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.02)
    return False


def probe() -> tuple[bool, str, str]:
    """Can a lab create a memory cgroup with a limit here? (ok, reason, fix)"""
    own = own_memory_cgroup()
    fix_priv = ("run as root (sudo make ...); in a container: docker run --privileged; "
                "or make lab-<lab> VM=1 for a QEMU guest")
    if own is None:
        return False, "no memory cgroup controller is mounted", fix_priv
    version, own_dir = own
    base = base_dir(version, own_dir)
    if not os.access(base, os.W_OK):
        return False, f"the cgroup {base} is not writable", fix_priv
    if version == 2:
        ok, why = enable_memory_v2(base)
        if not ok:
            return False, why, fix_priv
    test = os.path.join(base, f"memlab-probe-{os.getpid()}")
    try:
        os.mkdir(test)
    except FileExistsError:
        pass
    except OSError as e:
        return False, f"cannot create a cgroup under {base}: {e.strerror}", fix_priv
    try:
        limit = "memory.limit_in_bytes" if version == 1 else "memory.max"
        with open(os.path.join(test, limit), "w") as f:
            f.write(str(64 << 20))
    except OSError as e:
        return False, f"cannot set a memory limit in {test}: {e.strerror}", fix_priv
    finally:
        try:
            os.rmdir(test)
        except OSError:
            pass
    return True, "", ""


def enable_memory_v2(base: str) -> tuple[bool, str]:
    ctrl = os.path.join(base, "cgroup.subtree_control")
    if "memory" in (_read(ctrl) or "").split():
        return True, ""
    try:
        with open(ctrl, "w") as f:
            f.write("+memory")
        return True, ""
    except OSError as e:
        if e.errno != 16:  # EBUSY: processes live in base
            return False, f"cannot enable the memory controller in {base}: {e.strerror}"
    leaf = os.path.join(base, LEAF)
    os.makedirs(leaf, exist_ok=True)
    for _ in range(10):
        pids = (_read(os.path.join(base, "cgroup.procs")) or "").split()
        if not pids:
            break
        for pid in pids:
            try:
                with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass
    try:
        with open(ctrl, "w") as f:
            f.write("+memory")
        return True, ""
    except OSError as e:
        return False, (f"cannot enable the memory controller in {base} ({e.strerror}): "
                       f"its processes could not all be moved to {LEAF}")
