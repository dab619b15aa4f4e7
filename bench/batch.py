#!/usr/bin/env python3
"""bench/batch.py - how fast `make batch` grades a class, and what JOBS buys.

A class of N copies of the reference submission (labs/<lab>/<lab>.c of the core
labs, as folders and archives in turn) is graded from scratch once per JOBS
value; each run reports its wall time, the seconds per student and the speed-up
over JOBS=1. Without a usable sandbox (grader/sandbox.py) it grades with
--unsafe and says so.

    /usr/bin/python3 bench/batch.py [--students 50] [--jobs "1 2"] [--labs "cow faults maps threshold"]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=50)
    ap.add_argument("--jobs", default="1 2", help='JOBS values to compare (default: "1 2")')
    ap.add_argument("--labs", default=CORE)
    ap.add_argument("--keep", action="store_true", help="keep the class and the results")
    args = ap.parse_args()
    labs = args.labs.split()
    jobs = [int(j) for j in args.jobs.split()]
    sandboxed, why = sandbox_state()
    tmp = Path(tempfile.mkdtemp(prefix="memlab-bench-batch-"))
    make_class(tmp / "class", args.students, labs)
    load = os.getloadavg()[0]
    print(f"memlab batch bench: {args.students} copies of the reference submission, labs {' '.join(labs)}; "
          f"{os.cpu_count()} CPUs; load average {load:.1f} before the first run")
    print("sandbox: " + ("yes" if sandboxed else f"NO ({why}): graded with --unsafe"))
    print()
    print(f"  {'JOBS':>4}  {'wall s':>8}  {'s/student':>9}  {'speed-up':>8}  {'CPU s/student':>13}  "
          f"{'load':>5}  {'full marks':>10}")
    base = None
    for j in jobs:
        out = tmp / f"out-{j}"
        argv = [sys.executable, "-m", "grader", "batch", str(tmp / "class"), str(out),
                "--labs", " ".join(labs), "--jobs", str(j), "--seed", "1"]
        if not sandboxed:
            argv.append("--unsafe")
        t = time.monotonic()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        if p.returncode != 0:
            print(p.stdout[-3000:], p.stderr[-3000:])
            return 1
        rows = (out / "gradebook.csv").read_text().splitlines()[1:]
        full = sum(1 for r in rows if r.split(",")[-3] == r.split(",")[-2])
        base = base or wall
        print(f"  {j:>4}  {wall:>8.1f}  {wall / args.students:>9.2f}  {base / wall:>7.2f}x  "
              f"{cpu / args.students:>13.2f}  {os.getloadavg()[0]:>5.1f}  {full:>6}/{len(rows)}",
              flush=True)
    print("\nCPU s/student: user+sys of the whole batch (driver, workers, compilers, labs) per "
          "student;\nload: the 1-minute load average at the end of the run (anything above the "
          "batch's own\nJOBS is other work competing for the CPUs, and lowers the speed-up).")
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
