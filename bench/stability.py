#!/usr/bin/env python3
"""bench/stability.py - does any check flip? Grade every lab N times in a row,
each time with new parameters, while another process keeps a core busy.

    /usr/bin/python3 bench/stability.py [--times 20] [--no-load] [--labs "cow"]

Prints, per check, how often it passed, failed and was skipped, and exits 1 if
any check did not give the same verdict every time.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.build import build_lab  # noqa: E402
from grader.grading import grade_lab  # noqa: E402


def burn():
    os.nice(0)
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=20)
    ap.add_argument("--no-load", action="store_true", help="do not keep a core busy")
    ap.add_argument("--labs")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    labs = spec.discover(ROOT / "labs")
    if args.labs:
        labs = [lab for lab in labs if lab.name in args.labs.split()]
    binaries = {}
    for lab in labs:
        b = build_lab(ROOT, lab.name)
        if not b.ok:
            print(b.log)
            return 1
        binaries[lab.name] = b.binary
    load = None
    if not args.no_load:
        load = multiprocessing.Process(target=burn, daemon=True)
        load.start()
    tally: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    notes: dict[tuple, list] = collections.defaultdict(list)
    t0 = time.monotonic()
    try:
        for i in range(args.times):
            seed = args.seed + i
            for lab in labs:
                res = grade_lab(lab, ROOT, seed, binary=binaries[lab.name])
                for v in res.verdicts:
                    key = (lab.name, v.check.name)
                    tally[key][v.status] += 1
                    if v.status == "fail":
                        notes[key].append(f"seed {seed}: {v.message}")
            print(f"\rround {i + 1}/{args.times} ({time.monotonic() - t0:.0f} s)", end="", flush=True)
    finally:
        if load:
            load.terminate()
    print(f"\n{len(labs)} labs x {args.times} rounds, seeds {args.seed}..{args.seed + args.times - 1}, "
          f"{'no load' if args.no_load else 'one core kept busy'}, {time.monotonic() - t0:.0f} s")
    flips = 0
    for (lab, check), c in sorted(tally.items()):
        stable = len(c) == 1
        flips += not stable
        print(f"  {'   ' if stable else 'FLIP'} {lab:<10} {check:<28} ok {c['ok']:>3}  fail {c['fail']:>3}  "
              f"skip {c['skip']:>3}")
        for n in notes[(lab, check)][:3]:
            print(f"        {n}")
    print(f"{flips} checks flipped")
    return 1 if flips else 0


if __name__ == "__main__":
    sys.exit(main())
