"""What a person reads: the verdict table on the terminal, and the full log file."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from .checks import Verdict, fmt
from .grading import LabResult

STATUS = {"ok": "OK", "fail": "FAIL", "skip": "SKIP"}
COLORS = {"ok": "32", "fail": "31", "skip": "33"}


def use_color(stream=sys.stdout) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, status: str, color: bool) -> str:
    return f"\033[{COLORS[status]}m{text}\033[0m" if color else text


def points(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def score_line(score: float, max_score: float, skipped: float) -> str:
    line = f"Score: {points(score)}/{points(max_score)}"
    if skipped:
        line += f"  ({points(skipped)} points skipped on this machine: see SKIP above)"
    return line


def params_text(res: LabResult) -> str:
    drawn = ", ".join(f"{k}={fmt(res.values[k])}" for k in res.lab.params)
    return drawn or "no parameters"


def verdict_lines(v: Verdict, color: bool, show_hidden_tag: bool = True) -> list[str]:
    tag = paint(f"{STATUS[v.status]:<4}", v.status, color)
    pts = "  -  " if v.status == "skip" else f"{points(v.score)}/{points(v.check.points)}"
    title = v.check.title + (" [hidden]" if v.check.hidden and show_hidden_tag else "")
    head = f"  {tag}  {pts:>5}  {title}"
    lines = [head]
    if v.status == "ok":
        lines[0] = f"{head}  ({fmt(v.observed, v.check.unit)})" if v.observed is not None \
            and not isinstance(v.observed, bool) else head
        if v.message:           # passed, with a caveat (e.g. not cross-checked by strace)
            lines.append(f"               note: {v.message}" + (f" ({v.fix})" if v.fix else ""))
    elif v.status == "fail":
        lines.append(f"               {v.message}")
        hint = v.hint or v.check.hint
        if hint:
            lines.append(f"               hint: {hint}")
    else:
        lines.append(f"               skipped: {v.message}")
        if v.fix:
            lines.append(f"               to run it: {v.fix}")
    return lines


def lab_report(res: LabResult, color: bool, log_path: Path | None, show_output: bool = True) -> str:
    lab = res.lab
    out = [f"== {lab.name}: {lab.title} ==",
           f"parameters drawn by the grader: {params_text(res)}  "
           f"(repeat with SEED={res.seed})", ""]
    if res.build and not res.build.ok:
        out += ["The lab did not compile:", res.build.log.rstrip(), ""]
    shown = next((r for r in lab.runs.values() if r.show), None)
    if show_output and shown and shown.name in res.runs:
        run = res.runs[shown.name]
        out.append("$ " + " ".join(shlex.quote(a) for a in _lab_argv(run.argv, lab.name)))
        body = run.stdout.rstrip()
        out.append(body if body else "(no output)")
        if run.stderr.strip():
            out.append(run.stderr.rstrip())
        if not run.ok:
            out.append(f"[the run {run.describe()}]")
        out.append("")
        others = [r for n, r in res.runs.items() if n != shown.name]
        if others:
            out.append("Other runs: " + "; ".join(f"{r.name}: {r.describe()}" for r in others) +
                       (f" (their output is in {log_path})" if log_path else ""))
            out.append("")
    out.append("Checks:")
    for v in res.verdicts:
        out += verdict_lines(v, color)
    skipped = sum(v.check.points for v in res.verdicts if v.status == "skip")
    out += ["", score_line(res.score, res.max_score, skipped)]
    if log_path:
        out.append(f"Full log: {log_path}")
    return "\n".join(out)


def _lab_argv(argv: list[str], lab: str) -> list[str]:
    """The lab's own command line, without the grader's wrappers (strace, setarch)."""
    for i, a in enumerate(argv):
        if Path(a).name == lab:
            return [lab] + argv[i + 1:]
    return argv


def summary_table(results: list[LabResult], color: bool) -> str:
    out = [f"  {'lab':<12} {'score':>7}  verdicts"]
    for r in results:
        counts = {s: sum(1 for v in r.verdicts if v.status == s) for s in STATUS}
        parts = [paint(f"{counts[s]} {STATUS[s]}", s, color) for s in ("ok", "fail", "skip") if counts[s]]
        note = f"  ({r.error})" if r.error else ""
        out.append(f"  {r.lab.name:<12} {points(r.score) + '/' + points(r.max_score):>7}  "
                   f"{', '.join(parts)}{note}")
    return "\n".join(out)


def log_text(res: LabResult) -> str:
    """Everything about one graded lab, for the file in build/logs/."""
    lab = res.lab
    out = [f"memlab log: lab {lab.name} ({lab.title})", f"seed {res.seed}",
           "values: " + ", ".join(f"{k}={fmt(v)}" for k, v in res.values.items()), ""]
    if res.build:
        out += ["== build ==", res.build.log.rstrip() or "(no output)", ""]
    for name, f in res.skipped.items():
        out += [f"== run {name}: skipped: {f.reason} (fix: {f.fix}) ==", ""]
    for name, run in res.runs.items():
        out += [f"== run {name} ==", "argv: " + " ".join(shlex.quote(a) for a in run.argv),
                f"result: {run.describe()} in {run.duration:.3f} s; rusage {run.rusage}",
                f"main pid {run.main_pid}; {len(run.checkpoints)} checkpoints; "
                f"{len(run.figures)} figures; {run.leftovers} leftover processes killed; "
                f"{run.junk} malformed messages", "-- stdout --", run.stdout.rstrip(),
                "-- stderr --", run.stderr.rstrip(), "-- figures --"]
        out += [f"  {k} = {fmt(v)}" for k, v in run.figures.items()]
        out.append("-- checkpoints (grader's observations) --")
        for cp in run.checkpoints:
            o = cp.obs
            out.append(f"  {cp.name:<16} pid {cp.pid} ({cp.role}) held={cp.held} "
                       f"minflt={o.get('minflt')} majflt={o.get('majflt')} "
                       f"rss_anon_kb={o.get('rss_anon_kb')} pss_kb={o.get('pss_kb')} "
                       f"anon_huge_kb={o.get('anon_huge_kb')} referenced_kb={o.get('referenced_kb')} {cp.error}")
        if run.captures:
            out.append("-- captures --")
            out += [f"  {k} = {v}" for k, v in run.captures.items()]
        if run.trace:
            out.append(f"-- strace: {len(run.trace)} events --")
            out += [f"  [{e['at']}] {e['pid']} {e['call']}({e['args'][:100]}) = {e['ret']}"
                    for e in run.trace[:400]]
        out.append("")
    out.append("== verdicts ==")
    for v in res.verdicts:
        out.append(f"{STATUS[v.status]:<4} {points(v.score)}/{points(v.check.points)} {v.check.name}: "
                   f"{v.check.title}")
        out.append(f"     expected {v.expected or '-'}; observed {fmt(v.observed)}; "
                   f"reported {fmt(v.reported)}")
        if v.message:
            out.append(f"     {v.message}" + (f" | fix: {v.fix}" if v.fix else ""))
    return "\n".join(out) + "\n"
