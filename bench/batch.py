#!/usr/bin/env python3
"""bench/batch.py - how fast `make batch` grades a class, and what JOBS buys.

A class of N copies of the reference submission (labs/<lab>/<lab>.c of the core
labs, as folders and archives in turn) is graded from scratch once per JOBS
value; each run reports its wall time, the seconds per student and the speed-up
over JOBS=1, then how well this machine runs a C busy loop, a compiler and process
creation two at a time, each on its own CPU (the ceiling the speed-up meets). Without a usable sandbox
(grader/sandbox.py) it grades with --unsafe and says so.

    /usr/bin/python3 bench/batch.py [--students 50] [--jobs "1 2"] [--labs "cow faults maps threshold"]
                                    [--slices 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORE = "cow faults maps threshold"


def make_class(folder: Path, n: int, labs: list[str]) -> None:
    """n students: one in three a folder, a .tar.gz, a .zip (labs/<lab>/<lab>.c)."""
    folder.mkdir(parents=True)
    for i in range(n):
        name = f"student{i:03d}"
        files = {f"labs/{lab}/{lab}.c": (ROOT / "labs" / lab / f"{lab}.c").read_bytes() for lab in labs}
        if i % 3 == 0:
            for rel, data in files.items():
                (folder / name / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / name / rel).write_bytes(data)
        elif i % 3 == 1:
            with tarfile.open(folder / f"{name}.tar.gz", "w:gz") as tf:
                for rel in files:
                    tf.add(ROOT / rel, arcname=rel)
        else:
            with zipfile.ZipFile(folder / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for rel, data in files.items():
                    zf.writestr(rel, data)


def sandbox_state() -> tuple[bool, str]:
    try:
        from grader import sandbox
    except ImportError:
        return False, "grader/sandbox.py is not there"
    ok, reason, _ = sandbox.available()
    return ok, reason


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy so far (all processes, all CPUs)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")


def grade(cls: Path, out: Path, labs: list[str], jobs: int, sandboxed: bool) -> dict:
    argv = [sys.executable, "-m", "grader", "batch", str(cls), str(out), "--labs", " ".join(labs),
            "--jobs", str(jobs), "--seed", "1"]
    if not sandboxed:
        argv.append("--unsafe")
    busy0 = busy_cpu_seconds()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    other = max(busy_cpu_seconds() - busy0 - ours, 0.0)
    if p.returncode != 0:
        raise SystemExit(f"the batch failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    with open(out / "gradebook.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    full = sum(1 for r in rows if r["total"] == r["max"])
    for r in rows:                  # a reference submission below full marks: say why
        if r["total"] != r["max"]:
            doc = json.loads((out / r["student"] / "results.json").read_text())
            bad = [f"{t['extra_data']['lab']}.{t['extra_data']['check']}: {t['extra_data']['message']}"
                   for t in doc["tests"] if t["status"] == "failed"]
            print(f"  NOT FULL MARKS (JOBS={jobs}): {r['student']} {r['total']}/{r['max']}: "
                  + "; ".join(bad)[:1500], flush=True)
    return {"wall": wall, "cpu": ours, "other": other, "full": full, "rows": len(rows)}


SPAWN = 'i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done'
SPIN_C = "int main(void) { volatile unsigned long x = 0; for (unsigned long i = 0; i < 400000000UL; i++) x += i; return 0; }\n"


def scaling(argv: list[str], rounds: int = 3) -> float:
    """How much faster two copies of a command finish side by side, each on its own CPU
    (as JOBS=2 runs its workers), than one after the other; the median of `rounds`
    rounds, the two ways taking turns. 2.00x: the machine runs them fully in parallel."""
    cpus = sorted(os.sched_getaffinity(0))[:2]

    def timed(n_parallel: int) -> float:
        t = time.monotonic()
        procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=ROOT,
                                  preexec_fn=(lambda c=c: os.sched_setaffinity(0, {c})))
                 for c in cpus[:n_parallel]]
        for p in procs:
            p.wait()
        return time.monotonic() - t
    ratios = sorted((timed(1) + timed(1)) / timed(2) for _ in range(rounds))
    return ratios[len(ratios) // 2]


def spin_program(tmp: Path) -> Path:
    spin = tmp / "spin"
    if not spin.exists():
        (tmp / "spin.c").write_text(SPIN_C)
        subprocess.run(["cc", "-O1", str(tmp / "spin.c"), "-o", str(spin)], check=True)
    return spin


def compile_loop(tmp: Path) -> list[str]:
    return ["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do cc -std=gnu11 -D_GNU_SOURCE -O2 -g "
            f"-Icommon -c labs/cow/cow.c -o {tmp}/cow.$$.o || exit 1; done"]


def machine_ceiling(tmp: Path) -> str:
    """What this machine gives two things at once: the ceiling the batch's speed-up meets."""
    spin = spin_program(tmp)
    compile_lab = compile_loop(tmp)
    return (f"a C busy loop {scaling([str(spin)]):.2f}x, compiling a lab (cc -O2 -g) "
            f"{scaling(compile_lab):.2f}x, fork+exec+exit of /bin/true "
            f"{scaling(['/bin/sh', '-c', SPAWN]):.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=50)
    ap.add_argument("--jobs", default="1 2", help='JOBS values to compare (default: "1 2")')
    ap.add_argument("--labs", default=CORE)
    ap.add_argument("--slices", type=int, default=1,
                    help="grade the class in this many slices, the JOBS values taking turns on "
                         "each (fairer on a machine that other work shares)")
    ap.add_argument("--unsafe", action="store_true", help="grade without the sandbox even if it "
                    "is there (to see what the sandbox costs)")
    ap.add_argument("--keep", action="store_true", help="keep the class and the results")
    args = ap.parse_args()
    labs = args.labs.split()
    jobs = [int(j) for j in args.jobs.split()]
    sandboxed, why = sandbox_state()
    if args.unsafe and sandboxed:
        sandboxed, why = False, "--unsafe asked for"
    tmp = Path(tempfile.mkdtemp(prefix="memlab-bench-batch-"))
    sizes = [args.students // args.slices + (i < args.students % args.slices) for i in range(args.slices)]
    for i, n in enumerate(sizes):
        make_class(tmp / f"class-{i}", n, labs)
    print(f"memlab batch bench: {args.students} copies of the reference submission, labs "
          f"{' '.join(labs)}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start"
          + (f"; {args.slices} slices, JOBS values taking turns" if args.slices > 1 else ""))
    print("sandbox: " + ("yes" if sandboxed else f"NO ({why}): graded with --unsafe"))
    total = {j: {"wall": 0.0, "cpu": 0.0, "other": 0.0, "full": 0, "rows": 0} for j in jobs}
    spin = spin_program(tmp)
    # the machine's own two-at-once speed-up, measured before each slice: pure CPU work
    # (a C busy loop) and the compiler the batch runs
    capacity: dict = {"two C busy loops": [], "two compile loops": []}
    for i in range(args.slices):
        capacity["two C busy loops"].append(scaling([str(spin)], rounds=1))
        capacity["two compile loops"].append(scaling(compile_loop(tmp), rounds=1))
        if args.slices > 1:
            print(f"  slice {i + 1}/{args.slices}: this machine runs "
                  + ", ".join(f"{k} at {v[-1]:.2f}x" for k, v in capacity.items()), flush=True)
        order = jobs if i % 2 == 0 else list(reversed(jobs))
        for j in order:
            r = grade(tmp / f"class-{i}", tmp / f"out-{i}-{j}", labs, j, sandboxed)
            for k in total[j]:
                total[j][k] += r[k]
            if args.slices > 1:
                print(f"  slice {i + 1}/{args.slices}, JOBS={j}: {r['wall']:.1f} s for {sizes[i]} "
                      f"students", flush=True)
    print()
    print(f"  {'JOBS':>4}  {'wall s':>8}  {'s/student':>9}  {'speed-up':>8}  {'CPU s/student':>13}  "
          f"{'other work':>10}  {'full marks':>10}")
    base = total[jobs[0]]["wall"]
    for j in jobs:
        t = total[j]
        print(f"  {j:>4}  {t['wall']:>8.1f}  {t['wall'] / args.students:>9.2f}  "
              f"{base / t['wall']:>7.2f}x  {t['cpu'] / args.students:>13.2f}  "
              f"{100 * t['other'] / (t['wall'] * (os.cpu_count() or 1)):>9.0f}%  "
              f"{t['full']:>6}/{t['rows']}")
    print("\nduring the slices (before each), side by side against one after the other: "
          + "; ".join(f"{k} {sorted(v)[len(v) // 2]:.2f}x (median; {min(v):.2f}x-{max(v):.2f}x)"
                      for k, v in capacity.items())
          + "\n(the machine's own speed-up for CPU work, which varies with what else its host "
          "runs: the batch cannot beat it)")
    print("\nthis machine, 2 copies side by side (each on its own CPU) against one after the "
          f"other:\n  {machine_ceiling(tmp)}\n"
          "(the batch compiles, starts ~100 processes per student (compilers, bubblewrap, the labs)\n"
          "and runs the labs: it cannot run in parallel better than those do)")
    print("\nCPU s/student: user+sys of the whole batch (driver, workers, compilers, labs) per student.\n"
          "other work: CPU time of everything else on the machine during the runs, in % of all\n"
          "CPUs; it competes with the batch and lowers the speed-up.")
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
