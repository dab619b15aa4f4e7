"""Evaluate a lab's checks against what the grader observed of its runs.

Each check names a run, an `observed` expression (built from the grader's own
observations: checkpoints, captures, rusage, strace), an expected range or
condition, optionally the lab's own `report`ed figure that must agree with the
observation, and `require`d side conditions. See docs/lab-format.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import env as envmod
from .expr import NS, Evaluator, ExprError, Missing, Unavailable
from .functions import functions
from .runner import Checkpoint, RunResult
from .spec import PLACEHOLDER_RE, Check, Lab

CONSTANTS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


@dataclass
class Verdict:
    lab: str
    check: Check
    status: str                     # "ok", "fail", "skip"
    score: float
    observed: Any = None
    expected: str = ""
    reported: Any = None
    message: str = ""               # why it failed / was skipped
    fix: str = ""                   # for a skip: what would make it run
    internal: bool = False          # the check itself is broken (a grader bug)
    hint: str = ""                  # the check's hint, placeholders filled
    extra: dict = field(default_factory=dict)

    @property
    def max_score(self) -> float:
        return 0.0 if self.status == "skip" else self.check.points


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
            v = int(v)
        else:
            return f"{v:.4g}{' ' + unit if unit else ''}"
    if isinstance(v, int):
        return f"{v}{' ' + unit if unit else ''}"
    s = str(v)
    if s == "":
        return '""'
    return s if len(s) <= 60 else s[:57] + "..."


def fill_placeholders(text: str, values: dict) -> str:
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


def derive_values(lab: Lab, params: dict, facts: dict) -> dict:
    """Parameters plus the [derive] quantities, in order."""
    values = dict(params)
    ev = Evaluator({**CONSTANTS, **values, "env": NS(facts, "environment fact")})
    for name, text in lab.derive.items():
        values[name] = ev.eval(text)
        ev.names[name] = values[name]
    return values


def _vma_ns(v) -> NS:
    return NS(v.as_dict(), "VMA field")


def checkpoint_ns(cp: Checkpoint) -> NS:
    data = {k: v for k, v in cp.obs.items() if k != "maps"}
    data.update(name=cp.name, pid=cp.pid, role=cp.role, held=cp.held, t=cp.t,
                maps=[_vma_ns(v) for v in cp.obs.get("maps", [])])
    return NS(data, lambda k: f"the grader observed no '{k}' at checkpoint '{cp.name}'")


def _run_info(run: RunResult) -> dict:
    return {"exit": run.exit, "signal": run.signal, "limit": run.limit, "ok": run.ok,
            "duration": run.duration, "stdout": run.stdout, "stderr": run.stderr,
            "rusage": NS(run.rusage, "rusage field"), "leftovers": run.leftovers,
            "main_pid": run.main_pid, "described": run.describe()}


def _missing_cp(run: RunResult, name: str) -> str:
    if run.main_pid is None:
        return (f"the lab never connected to the grader (does main() call ml_init()?); "
                f"the run {run.describe()}")
    bad = [c for c in run.checkpoints if c.name == name]
    if bad and bad[0].error:
        return f"checkpoint '{name}': {bad[0].error}"
    if bad and bad[0].held is False:
        return f"at checkpoint '{name}' the process did not wait for the grader"
    return f"the lab never reached checkpoint '{name}' (the run {run.describe()})"


def _missing_fig(run: RunResult, name: str) -> str:
    if run.main_pid is None:
        return f"the lab never connected to the grader, so it reported nothing (the run {run.describe()})"
    return f"the lab did not report figure '{name}'"


def _first_cps(run: RunResult) -> dict[str, NS]:
    """The first good observation of each checkpoint (the process waited, /proc was read)."""
    cps: dict[str, NS] = {}
    for cp in run.checkpoints:
        if cp.name not in cps and not cp.error and cp.held is not False:
            cps[cp.name] = checkpoint_ns(cp)
    return cps


def run_namespace(run: RunResult, all_runs: dict[str, RunResult], values: dict,
                  facts: dict) -> dict:
    cps = _first_cps(run)
    all_cps: dict[str, list] = {}
    for cp in run.checkpoints:
        all_cps.setdefault(cp.name, []).append(cp)
    caps = {}
    for k, v in run.captures.items():
        caps[k] = v
    return {
        **CONSTANTS, **values,
        "env": NS(facts, "environment fact"),
        "cp": NS(cps, lambda k: _missing_cp(run, k)),
        "fig": NS(run.figures, lambda k: _missing_fig(run, k)),
        "cap": _CaptureNS(caps, run),
        "run": NS(_run_info(run), "run field"),
        "runs": NS({k: NS({**_run_info(r), "cp": NS(_first_cps(r), lambda k, r=r: _missing_cp(r, k)),
                           "fig": NS(r.figures, lambda k, r=r: _missing_fig(r, k))}, "run field")
                    for k, r in all_runs.items()}, lambda k: f"run '{k}' did not take place"),
        "trace": [NS(e, "trace field") for e in run.trace],
        "messages": [NS({"seq": m.seq, "pid": m.pid, "kind": m.kind, "name": m.name,
                         "value": m.value}, "message field") for m in run.messages],
        "_all_cps": all_cps,
        "_ends": run.ends,
    }


class _CaptureNS(NS):
    def __init__(self, data, run: RunResult):
        super().__init__(data, lambda k: f"capture '{k}' was not taken (the run {run.describe()})")

    def get(self, key):
        v = super().get(key)
        if isinstance(v, Unavailable):
            raise v
        if isinstance(v, Exception):
            raise Missing(f"capture '{key}': {v}")
        return v


def _features_missing(names: list[str]):
    for n in names:
        f = envmod.feature(n)
        if not f.ok:
            return f
    return None


_TRACE_WORDS = re.compile(r"\b(trace|between|calls_before|calls_after|calls|opened|signals_sent)\b")


def _unconfirmed(lab: Lab, check: Check):
    """The strace Feature when this check reads the system-call trace of a run that
    could not be traced here (strace missing, ptrace refused), else None: such a check
    passes on what /proc and the counters show (its trace parts pass vacuously), and its
    verdict says so."""
    run = lab.runs.get(check.run)
    if run is None or not run.strace:
        return None
    texts = [check.observed, *(check.expect if isinstance(check.expect, list) else [check.expect]),
             *(r.expr for r in check.require)]
    if not any(isinstance(t, str) and _TRACE_WORDS.search(t) for t in texts):
        return None
    f = envmod.feature("strace")
    return None if f.ok else f


def evaluate(lab: Lab, check: Check, runs: dict[str, RunResult], skipped: dict,
             values: dict, facts: dict) -> Verdict:
    v = Verdict(lab.name, check, "fail", 0.0)
    if check.run in skipped:
        f = skipped[check.run]
        v.status, v.message, v.fix = "skip", f.reason, f.fix
        return v
    f = _features_missing(check.requires)
    if f:
        v.status, v.message, v.fix = "skip", f.reason, f.fix
        return v
    run = runs.get(check.run)
    if run is None:
        v.message = f"run '{check.run}' did not take place"
        return v
    evaded = next((r for r in runs.values() if r.limit == "untraced"), None)
    if evaded is not None:      # a lab that hides from the trace earns nothing: no check can trust it
        v.message = f"the run '{evaded.name}': {evaded.describe()}"
        return v
    names = run_namespace(run, runs, values, facts)
    ev = Evaluator(names, functions(names))
    placeholders = {**values}
    v.hint = fill_placeholders(check.hint, placeholders)
    try:
        observed = ev.eval(check.observed)
        v.observed = observed
        if isinstance(check.expect, list):
            lo, hi = ev.eval(check.expect[0]), ev.eval(check.expect[1])
            v.expected = fill_placeholders(check.expected_text, placeholders) or (
                fmt(lo, check.unit) if lo == hi else f"{fmt(lo)}..{fmt(hi, check.unit)}")
            in_range = isinstance(observed, (int, float)) and not isinstance(observed, bool) \
                and lo <= observed <= hi
            if not in_range:
                v.message = f"expected {v.expected}, observed {fmt(observed, check.unit)}"
        else:
            v.expected = fill_placeholders(check.expected_text, placeholders) or check.expect
            if not ev.eval(check.expect, {"value": observed}):
                v.message = f"expected {v.expected}, observed {fmt(observed, check.unit)}"
        if not v.message and check.report:
            reported = ev.eval(check.report)
            v.reported = reported
            tol = ev.eval(check.agree)
            if not isinstance(reported, (int, float)) or isinstance(reported, bool):
                if reported != observed:
                    v.message = (f"the lab reported {fmt(reported)}, but the grader observed "
                                 f"{fmt(observed)}")
            elif abs(reported - observed) > tol:
                v.message = (f"the lab reported {fmt(reported, check.unit)}, but the kernel's own "
                             f"counters say {fmt(observed, check.unit)} (allowed difference: {fmt(tol)})")
        if not v.message:
            for req in check.require:
                if not ev.eval(req.expr):
                    v.message = fill_placeholders(req.why, placeholders) or f"requirement failed: {req.expr}"
                    break
    except Unavailable as e:
        v.status, v.message, v.fix = "skip", e.reason, e.fix
        return v
    except Missing as e:
        v.message = str(e)
    except ExprError as e:
        v.message = f"grader error in this check ({e}); please report it"
        v.internal = True
    if not v.message:
        v.status, v.score = "ok", check.points
        missing = _unconfirmed(lab, check)
        if missing is not None:     # passed on /proc and the counters alone: say what is missing
            v.message = (f"not cross-checked against the lab's system calls: {missing.reason}")
            v.fix = missing.fix
    elif run.main_pid is None and "never connected" not in v.message:
        v.message += (" (the lab never connected to the grader: does main() call ml_init()?"
                      f" The run {run.describe()}.)")
    elif not run.ok and "the run" not in v.message:
        v.message += f" (the run {run.describe()})"
    return v
