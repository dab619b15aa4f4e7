"""The sandbox on cgroup v2, checked inside the QEMU guest (pure v2, nsdelegate).

Run by tests/test_sandbox.py::test_cgroup_v2_in_the_guest:
    python3 tests/sandbox_guest.py [--switch-root] BUILD LAB...
grades each reference LAB sandboxed (from the course's own source, built in the
sandbox into BUILD/<lab>), then a fork bomb and a memory hog (tests/sandbox_hostile)
as the faults lab, and prints one line "SANDBOX-GUEST <json>".

--switch-root: the guest's /init runs the job chrooted into the host's tree, and the
kernel refuses user namespaces (bubblewrap) to a chrooted process; this moves the
tree onto / (as switch_root does) and chroots there, which the kernel accepts."""

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.build import make_env  # noqa: E402
from grader.grading import grade_lab  # noqa: E402
from grader.sandbox import Limits, Sandbox, available  # noqa: E402


def uid_processes(uid: int) -> int:
    n = 0
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                n += os.stat(f"/proc/{e}").st_uid == uid
            except OSError:
                pass
    return n


def summary(res) -> dict:
    return {"score": res.score, "max": res.max_score, "error": res.error,
            "log": res.build.log[-1500:] if res.build and not res.build.ok else "",
            "fails": [f"{v.check.name}: {v.message}" for v in res.verdicts if v.status == "fail"],
            "runs": {n: {"described": r.describe(), "sandbox": r.sandbox,
                         "cgroup": r.figures.get("cgroup")} for n, r in res.runs.items()}}


def switch_root() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    cwd = os.getcwd()
    os.chroot("/proc/1/root")           # the initramfs, where /host is mounted
    os.chdir("/host")
    if libc.mount(b".", b"/", None, 8192, None) != 0:      # MS_MOVE
        raise OSError(ctypes.get_errno(), "mount --move /host /")
    os.chroot(".")
    os.chdir(cwd)


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "--switch-root":
        switch_root()
        args = args[1:]
    build_root, labs = Path(args[0]), args[1:]
    out = {"available": available(), "cgroup": Path("/proc/self/cgroup").read_text()}
    lib_build = build_root / "lib"
    subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={lib_build}", str(lib_build / "libmemlab.a")],
                   check=True, env=make_env(), stdout=subprocess.DEVNULL)

    def fresh(name: str) -> Path:
        b = build_root / name
        shutil.copytree(lib_build, b)
        return b

    with Sandbox(0) as sb:
        out["version"] = sb.version
        for lab in labs:
            t = time.monotonic()
            res = grade_lab(spec.load(ROOT / "labs" / lab), ROOT, 1, build_dir=fresh(lab), sandbox=sb)
            out[lab] = summary(res)
            out[lab]["seconds"] = round(time.monotonic() - t, 1)
        out["after_labs_processes"] = uid_processes(sb.uid)
    limits = Limits(memory_mb=96, pids=24, cpu_s=20, compile_s=120)
    with Sandbox(1, limits) as sb:
        for name in ("fork_bomb", "memory_hog"):
            src = build_root / f"src-{name}" / "faults"
            src.mkdir(parents=True)
            shutil.copy2(ROOT / "tests" / "sandbox_hostile" / f"{name}.c", src / "faults.c")
            res = grade_lab(spec.load(ROOT / "labs" / "faults"), ROOT, 1, build_dir=fresh(name),
                            labs_src=src.parent, timeout=20, sandbox=sb)
            out[name] = summary(res)
        out["after_hostile_processes"] = uid_processes(sb.uid)
    base = Path("/sys/fs/cgroup")
    out["left_groups"] = sorted(str(p) for p in base.rglob("memlab-sbx*"))
    print("SANDBOX-GUEST " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
