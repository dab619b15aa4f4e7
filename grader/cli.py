"""Command line: python3 -m grader {run,grade,handout,list,env} (see --help)."""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from . import __version__
from . import env as envmod
from .grading import grade_lab
from .report import lab_report, log_text, points, score_line, summary_table, use_color
from .results import results_document, write_atomic, write_results
from .spec import SpecError, discover, lab_names, load

ROOT = Path(__file__).resolve().parent.parent


def _labs(root: Path, names: list[str] | None):
    if not names:
        return discover(root / "labs")
    have = lab_names(root / "labs")
    unknown = [n for n in names if n not in have]
    if unknown:
        raise SpecError(f"no such lab: {', '.join(unknown)} (labs: {', '.join(have)})")
    return [load(root / "labs" / n) for n in names]     # only those: a batch worker starts often


_MACHINE: dict = {}


def _machine(root: Path) -> dict:
    """What `make doctor` says of this machine, for results.json (computed once)."""
    if not _MACHINE:
        from .doctor import collect
        _MACHINE.update(collect(root))
    return _MACHINE


def _seed(args) -> int:
    return args.seed if args.seed is not None else secrets.randbelow(1_000_000)


def in_guest(args, argv: list[str]) -> int:
    """Run this same grader command inside the QEMU guest (docs/vm.md): the labs
    are built here first, the guest sees this tree and writes build/ in it."""
    from . import vm
    from .build import make_env
    import subprocess
    root = Path(args.root)
    ok, reason, fix = vm.guest_available()
    if not ok:
        print(f"memlab: cannot use the QEMU guest: {reason}" + (f" (fix: {fix})" if fix else ""),
              file=sys.stderr)
        return 2
    p = subprocess.run(["make", "-s", "-C", str(root), "build"], env=make_env())
    if p.returncode != 0:
        return p.returncode
    print("memlab: running in a QEMU guest (Debian's kernel, cgroup v2, two NUMA nodes; "
          "see docs/vm.md) ...", flush=True)
    res = vm.run_in_guest(root, [sys.executable, "-m", "grader"] + argv, stream=sys.stdout,
                          timeout=args.vm_timeout)
    if res.error:
        print(f"memlab: the guest failed: {res.error}", file=sys.stderr)
        return 2
    return res.exit if res.exit is not None else 2


def cmd_run(args) -> int:
    if args.vm:
        return in_guest(args, ["run", args.lab, "--seed", str(_seed(args))])
    root = Path(args.root)
    lab = load(root / "labs" / args.lab) if (root / "labs" / args.lab / "lab.toml").is_file() \
        else _labs(root, [args.lab])[0]
    seed = _seed(args)
    color = use_color()
    t0 = time.monotonic()
    print(f"memlab: building and running lab '{lab.name}' ...", flush=True)
    res = grade_lab(lab, root, seed, build_dir=root / "build")
    log = root / "build" / "logs" / f"{lab.name}.log"
    write_atomic(log, log_text(res))
    write_results(root / "build" / f"results-{lab.name}.json",
                  results_document([res], envmod.facts(), seed, time.monotonic() - t0,
                                   extra={"machine": _machine(root)}))
    print(lab_report(res, color, log.relative_to(root) if log.is_relative_to(root) else log))
    return 0 if res.passed else 1


def cmd_grade(args) -> int:
    if args.vm:
        argv = ["grade", "--seed", str(_seed(args)), "--results", args.results]
        if args.labs:
            argv += ["--labs", args.labs]
        if args.quiet:
            argv.append("--quiet")
        return in_guest(args, argv)
    root = Path(args.root)
    labs = _labs(root, args.labs.split() if args.labs else None)
    seed = _seed(args)
    color = use_color()
    t0 = time.monotonic()
    results = []
    print(f"memlab {__version__}: grading {len(labs)} labs (seed {seed})", flush=True)
    for lab in labs:
        if sys.stdout.isatty():
            print(f"  {lab.name:<12} ...", end="", flush=True)
        t = time.monotonic()
        res = grade_lab(lab, root, seed, build_dir=root / "build")
        results.append(res)
        write_atomic(root / "build" / "logs" / f"{lab.name}.log", log_text(res))
        write_results(Path(args.results), results_document(results, envmod.facts(), seed,
                                                           time.monotonic() - t0,
                                                           extra={"machine": _machine(root)}))
        skipped = sum(v.check.points for v in res.verdicts if v.status == "skip")
        print(f"{chr(13) if sys.stdout.isatty() else ''}  {lab.name:<12} "
              f"{points(res.score)}/{points(res.max_score)}"
              f"{'  (' + res.error + ')' if res.error else ''}"
              f"{'  ' + points(skipped) + ' pts skipped' if skipped else ''}  "
              f"[{time.monotonic() - t:.1f} s]", flush=True)
        if not args.quiet:
            for v in res.verdicts:
                if v.status != "ok":
                    from .report import verdict_lines
                    print("\n".join("  " + ln for ln in verdict_lines(v, color)))
    print()
    print(summary_table(results, color))
    total = sum(r.score for r in results)
    max_total = sum(r.max_score for r in results)
    skipped = sum(v.check.points for r in results for v in r.verdicts if v.status == "skip")
    print()
    print(score_line(total, max_total, skipped))
    rel = Path(args.results)
    if rel.is_absolute() and rel.is_relative_to(Path.cwd()):
        rel = rel.relative_to(Path.cwd())
    print(f"Results: {rel} (Gradescope format); logs: build/logs/ "
          f"(repeat these parameters with SEED={seed})")
    return 0 if all(r.passed for r in results) else 1


def cmd_list(args) -> int:
    for lab in _labs(Path(args.root), None):
        print(f"{lab.name:<12} {points(lab.max_points):>3} pts  {lab.title}")
    return 0


def cmd_env(args) -> int:
    for k, v in envmod.facts().items():
        print(f"{k:<14} {v}")
    for name in envmod.KNOWN_FEATURES:
        f = envmod.feature(name)
        print(f"feature {name:<8} {'yes' if f.ok else 'no: ' + f.reason + ' (fix: ' + f.fix + ')'}")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import collect, render
    data = collect(Path(args.root), args.fake_root or "/")
    if args.json:
        import json
        print(json.dumps(data, indent=2, default=str))
    else:
        print(render(data))
    return 0


def cmd_handout(args) -> int:
    from .handout import HandoutError, make_handout
    try:
        out = make_handout(Path(args.root), Path(args.out))
    except HandoutError as e:
        print(f"memlab handout: {e}", file=sys.stderr)
        return 2
    print(f"memlab: wrote the student handout to {out}")
    print(f"  it holds no solution (checked); try: make -C {out} grade")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m grader", description="memlab's grader")
    p.add_argument("--root", default=str(ROOT), help="the memlab tree (default: %(default)s)")
    p.add_argument("--version", action="version", version=f"memlab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="build, run and grade one lab, showing its output")
    r.add_argument("lab")
    r.add_argument("--seed", type=int)
    r.add_argument("--vm", action="store_true", help="run it in a QEMU guest (docs/vm.md)")
    r.add_argument("--vm-timeout", type=float, default=900, help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    g = sub.add_parser("grade", help="grade every lab (or --labs) and write results.json")
    g.add_argument("--labs", help='space-separated lab names, e.g. "cow faults"')
    g.add_argument("--seed", type=int)
    g.add_argument("--results", default=str(ROOT / "build" / "results.json"))
    g.add_argument("--quiet", action="store_true", help="only the summary")
    g.add_argument("--vm", action="store_true", help="grade in a QEMU guest (docs/vm.md)")
    g.add_argument("--vm-timeout", type=float, default=1800, help=argparse.SUPPRESS)
    g.set_defaults(func=cmd_grade)

    h = sub.add_parser("handout", help="write the student version (solutions stripped)")
    h.add_argument("--out", default="dist/handout")
    h.set_defaults(func=cmd_handout)

    from . import gradescope, submit            # make submit, make gradescope, autograde
    submit.register(sub)
    gradescope.register(sub)
    from . import batch                         # make batch: a whole class (docs/batch.md)
    batch.register(sub)

    sub.add_parser("list", help="the labs").set_defaults(func=cmd_list)
    sub.add_parser("env", help="the raw facts and features").set_defaults(func=cmd_env)
    d = sub.add_parser("doctor", help="what this machine supports and what each lab will do here")
    d.add_argument("--json", action="store_true")
    d.add_argument("--fake-root", help=argparse.SUPPRESS)
    d.set_defaults(func=cmd_doctor)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as e:
        print(f"memlab: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmemlab: interrupted; results written so far are kept", file=sys.stderr)
        return 130
