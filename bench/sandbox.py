#!/usr/bin/env python3
"""bench/sandbox.py - what the sandbox (grader/sandbox.py) costs per run.

The same command run under observation (grader.runner.execute) bare and in the
sandbox, alternately, N times each; the medians and their difference are the
sandbox's overhead per run (cgroups made and removed, the wrapper, setpriv,
bubblewrap's namespaces and mounts, the kill and the counters afterwards).
Commands: /bin/true, and a tiny lab (ml_init, one checkpoint the grader
observes, exit). Also: the setup and teardown of a run's cgroups alone, and one
compilation of the faults lab, bare and sandboxed.

    /usr/bin/python3 bench/sandbox.py [--times 50] [--slot 200]

Needs what the sandbox needs (root, bubblewrap, cgroups). Not a timed test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import sandbox as sandboxmod  # noqa: E402
from grader.build import build_lab, make_env  # noqa: E402
from grader.runner import execute  # noqa: E402

TINY = r'''#include "memlab.h"
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    ml_report_long("x", 42);
    ml_checkpoint("only");
    return 0;
}
'''


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return (f"median {statistics.median(xs) * 1e3:6.1f} ms   p10 {xs[len(xs) // 10] * 1e3:6.1f}   "
            f"p90 {xs[len(xs) * 9 // 10] * 1e3:6.1f}")


def cpu_now() -> float:
    """CPU seconds used so far by this process and its reaped children (the sandbox's
    processes included): unlike the wall clock, it does not grow with the machine's load."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, cpu: list | None = None) -> float:
    c0, t0 = cpu_now(), time.perf_counter()
    fn()
    if cpu is not None:
        cpu.append(cpu_now() - c0)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=50)
    ap.add_argument("--slot", type=int, default=200)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    ok, reason, fix = sandboxmod.available()
    if not ok:
        print(f"no sandbox here: {reason} ({fix})")
        return 2
    work = Path(tempfile.mkdtemp(prefix="memlab-bench-"))
    try:
        build = work / "build"
        subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={build}", str(build / "libmemlab.a")],
                       check=True, env=make_env(), stdout=subprocess.DEVNULL)
        (work / "tiny.c").write_text(TINY)
        tiny = work / "tiny"
        subprocess.run(["cc", "-O2", f"-I{ROOT / 'common'}", str(work / "tiny.c"), "-o", str(tiny),
                        str(build / "libmemlab.a"), "-lm"], check=True)
        sb = sandboxmod.Sandbox(args.slot)
        try:
            print(f"memlab sandbox overhead per run: {args.times} runs each, alternating; "
                  f"cgroup v{sb.version}, slot uid {sb.uid}, wrapper "
                  f"{'compiled helper' if sb._helper else 'sh + setpriv'}; load average "
                  f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            for label, argv in (("/bin/true", ["/bin/true"]), ("tiny lab", [str(tiny)])):
                bare, boxed, bare_cpu, boxed_cpu = [], [], [], []
                for _ in range(3):          # warm up both
                    execute("w", argv)
                    execute("w", argv, sandbox=sb)
                for _ in range(args.times):
                    bare.append(timed(lambda: execute("b", argv), bare_cpu))
                    r = [None]
                    boxed.append(timed(lambda: r.__setitem__(0, execute("s", argv, sandbox=sb)),
                                       boxed_cpu))
                    assert r[0].exit == 0 and not r[0].error, r[0].describe()
                    if label == "tiny lab":
                        assert r[0].checkpoints and r[0].checkpoints[0].held, r[0].checkpoints
                d = statistics.median(boxed) - statistics.median(bare)
                print(f"  {label:<10} bare      {ms(bare)}")
                print(f"  {label:<10} sandboxed {ms(boxed)}")
                p10 = sorted(boxed)[len(boxed) // 10] - sorted(bare)[len(bare) // 10]
                dc = statistics.median(boxed_cpu) - statistics.median(bare_cpu)
                print(f"  {label:<10} overhead  {d * 1e3:6.1f} ms wall (median - median), "
                      f"{p10 * 1e3:.1f} ms (p10 - p10); CPU {statistics.median(bare_cpu) * 1e3:.1f} -> "
                      f"{statistics.median(boxed_cpu) * 1e3:.1f} ms: +{dc * 1e3:.1f} ms")
            setup = []
            wd = tempfile.mkdtemp(prefix="memlab-bench-run-")
            for _ in range(args.times):
                t0 = time.perf_counter()
                sb.begin_run(workdir=wd)
                sb.wrap(["/bin/true"], {})
                sb.end_run(None)
                setup.append(time.perf_counter() - t0)
            shutil.rmtree(wd, ignore_errors=True)
            print(f"  cgroups alone (make, limit, kill, read, remove): {ms(setup)}")
            if not args.no_compile:
                n = max(3, args.times // 10)
                bare, boxed = [], []
                for i in range(n):
                    for mode, out in (("bare", bare), ("sandboxed", boxed)):
                        b = work / f"b-{mode}-{i}"
                        shutil.copytree(build, b)
                        t0 = time.perf_counter()
                        res = build_lab(ROOT, "faults", b, sandbox=sb if mode == "sandboxed" else None)
                        out.append(time.perf_counter() - t0)
                        assert res.ok, res.log
                d = statistics.median(boxed) - statistics.median(bare)
                print(f"  compile faults ({n}x)  bare {statistics.median(bare) * 1e3:.0f} ms, sandboxed "
                      f"{statistics.median(boxed) * 1e3:.0f} ms: overhead {d * 1e3:.0f} ms")
        finally:
            sb.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
