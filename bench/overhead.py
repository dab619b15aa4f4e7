#!/usr/bin/env python3
"""bench/overhead.py - what the grader costs on top of the labs themselves.

For every lab: the wall time of its runs executed bare (the same programs and
arguments, no grader channel), against the wall time of grading them (runs
under observation, checkpoints, captures, strace where declared, checks). The
difference is the grader's overhead. Builds are excluded (done once first).

    /usr/bin/python3 bench/overhead.py [--repeat 5] [--labs "cow faults"]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import env as envmod  # noqa: E402
from grader import spec  # noqa: E402
from grader.build import build_lab  # noqa: E402
from grader.checks import derive_values  # noqa: E402
from grader.grading import grade_lab, lab_seed  # noqa: E402
from grader.runner import LAB_ENV  # noqa: E402
from grader.spec import fill_placeholders_args  # noqa: E402

import random  # noqa: E402


def bare_time(lab, binary: Path, seed: int) -> float:
    """Run every run of the lab without the grader, as a student would by hand."""
    values = derive_values(lab, lab.draw(random.Random(lab_seed(seed, lab.name))), envmod.facts())
    t0 = time.perf_counter()
    for run in lab.runs.values():
        if any(not envmod.feature(f).ok for f in run.requires):
            continue
        argv = [str(binary)] + fill_placeholders_args(run.args, values)
        if run.norandom:
            argv = ["setarch", envmod.facts()["arch"], "-R"] + argv
        env = dict(LAB_ENV)
        env.update({k: fill_placeholders_args([v], values)[0] for k, v in run.env.items()})
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--labs")
    args = ap.parse_args()
    labs = spec.discover(ROOT / "labs")
    if args.labs:
        labs = [lab for lab in labs if lab.name in args.labs.split()]
    print(f"memlab grader overhead, {args.repeat} repetitions, median (kernel "
          f"{envmod.facts()['kernel']}, {envmod.facts()['cpus']} CPUs)")
    print(f"{'lab':<10} {'runs':>4} {'bare s':>8} {'graded s':>9} {'overhead s':>11} "
          f"{'per run ms':>11} {'checkpoints':>11}")
    total_over = []
    for lab in labs:
        b = build_lab(ROOT, lab.name)
        if not b.ok:
            print(f"{lab.name}: does not build\n{b.log}")
            return 1
        bare, graded, cps, nruns = [], [], 0, 0
        for i in range(args.repeat):
            seed = 1000 + i
            bare.append(bare_time(lab, b.binary, seed))
            t0 = time.perf_counter()
            res = grade_lab(lab, ROOT, seed, binary=b.binary)
            graded.append(time.perf_counter() - t0)
            cps = sum(len(r.checkpoints) for r in res.runs.values())
            nruns = len(res.runs)
        mb, mg = statistics.median(bare), statistics.median(graded)
        over = mg - mb
        total_over.append(over)
        print(f"{lab.name:<10} {nruns:>4} {mb:>8.3f} {mg:>9.3f} {over:>11.3f} "
              f"{1000 * over / max(nruns, 1):>11.1f} {cps:>11}")
    print(f"mean overhead per lab: {statistics.mean(total_over):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
