"""results.json in Gradescope's schema (docs: ../docs/grading.md), written atomically."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

from . import __version__
from .checks import Verdict, fmt
from .grading import LabResult


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return fmt(v)           # NaN/Infinity are not JSON: Gradescope would reject the file
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return fmt(v)


def test_entry(v: Verdict, number: str, params: dict) -> dict:
    c = v.check
    if v.status == "ok":
        output = f"OK: {c.title}. Observed {fmt(v.observed, c.unit)} (expected {v.expected})." \
            + (f" Note: {v.message}." + (f" ({v.fix})" if v.fix else "") if v.message else "")
    elif v.status == "skip":
        output = f"SKIPPED on the grading machine: {v.message}." + (f" To run it: {v.fix}." if v.fix else "")
    else:
        hint = v.hint or c.hint
        output = f"FAILED: {c.title}. {v.message}." + (f"\nHint: {hint}" if hint else "")
    return {
        "name": f"{v.lab}: {c.title}",
        "number": number,
        "score": v.score,
        "max_score": v.max_score,
        "status": "failed" if v.status == "fail" else "passed",
        "output": output,
        "output_format": "text",
        "tags": [v.lab] + (["skipped"] if v.status == "skip" else []),
        "visibility": "hidden" if c.hidden else "visible",
        "extra_data": {
            "lab": v.lab, "check": c.name, "verdict": v.status, "run": c.run,
            "observed": _jsonable(v.observed), "expected": v.expected,
            "reported": _jsonable(v.reported), "message": v.message, "fix": v.fix,
            "params": _jsonable(params),
        },
    }


def results_document(results: list[LabResult], facts: dict, seed: int, elapsed: float,
                     extra: dict | None = None) -> dict:
    tests = []
    for i, r in enumerate(results, 1):
        for j, v in enumerate(r.verdicts, 1):
            tests.append(test_entry(v, f"{i}.{j}", r.values))
    score = sum(r.score for r in results)
    max_score = sum(r.max_score for r in results)
    summary = "\n".join(f"{r.lab.name}: {fmt(r.score)}/{fmt(r.max_score)}" +
                        (f" ({r.error})" if r.error else "") for r in results)
    return {
        "score": score,
        "execution_time": round(elapsed, 2),
        "output": f"memlab {__version__}: {fmt(score)}/{fmt(max_score)} points\n{summary}",
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "memlab_version": __version__, "seed": seed, "max_score": max_score,
            "environment": _jsonable(facts),
            "labs": {r.lab.name: {"score": r.score, "max_score": r.max_score, "error": r.error,
                                  "params": _jsonable(r.values),
                                  "runs": {n: run.describe() for n, run in r.runs.items()},
                                  "skipped_runs": {n: f.reason for n, f in r.skipped.items()}}
                     for r in results},
            **(extra or {}),
        },
    }


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ""):
    """Yield (fd, temporary path) next to path; on success the temporary file replaces
    path at once (readers see the old file or the new one, never half of one); on any
    error it is removed and path is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: Path, text: str):
    with replacing(path) as (fd, _), os.fdopen(fd, "w") as f:
        f.write(text)


def write_results(path: Path, doc: dict):
    write_atomic(path, json.dumps(doc, indent=2) + "\n")
