"""grader/results.py: results.json in Gradescope's format, written atomically."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import results as resultsmod  # noqa: E402
from grader.checks import Verdict  # noqa: E402
from grader.grading import LabResult  # noqa: E402
from grader.runner import RunResult  # noqa: E402
from grader.env import Feature  # noqa: E402
from grader.expr import NS  # noqa: E402
from grader.results import results_document, write_atomic, write_results  # noqa: E402
from grader.spec import load  # noqa: E402

# ---- a validator for Gradescope's results.json (../shared/docs/grading-formats.md) ----

OUTPUT_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
NUMBER = (int, float)


def is_num(x) -> bool:
    return isinstance(x, NUMBER) and not isinstance(x, bool) and math.isfinite(x)


def validate(doc) -> list[str]:
    """Problems with doc as a Gradescope results.json; [] when it is valid."""
    bad = []
    if not isinstance(doc, dict):
        return ["not an object"]
    top = {"score": is_num, "execution_time": is_num, "output": lambda x: isinstance(x, str),
           "output_format": lambda x: x in OUTPUT_FORMATS, "visibility": lambda x: x in VISIBILITY,
           "stdout_visibility": lambda x: x in VISIBILITY, "tests": lambda x: isinstance(x, list),
           "extra_data": lambda x: isinstance(x, dict)}
    for k, ok in top.items():
        if k not in doc:
            bad.append(f"top level: no '{k}'")
        elif not ok(doc[k]):
            bad.append(f"top level: bad '{k}': {doc[k]!r}")
    allowed_top = set(top) | {"leaderboard"}
    bad += [f"top level: unknown key '{k}'" for k in set(doc) - allowed_top]
    entry = {"score": is_num, "max_score": is_num, "status": lambda x: x in ("passed", "failed"),
             "name": lambda x: isinstance(x, str) and x != "",
             "number": lambda x: isinstance(x, str) and x != "",
             "output": lambda x: isinstance(x, str),
             "output_format": lambda x: x in OUTPUT_FORMATS,
             "tags": lambda x: isinstance(x, list) and all(isinstance(t, str) for t in x),
             "visibility": lambda x: x in VISIBILITY,
             "extra_data": lambda x: isinstance(x, dict)}
    for i, t in enumerate(doc.get("tests") or []):
        if not isinstance(t, dict):
            bad.append(f"test #{i}: not an object")
            continue
        for k, ok in entry.items():
            if k not in t:
                bad.append(f"test #{i}: no '{k}'")
            elif not ok(t[k]):
                bad.append(f"test #{i}: bad '{k}': {t[k]!r}")
        bad += [f"test #{i}: unknown key '{k}'" for k in set(t) - set(entry)]
        if is_num(t.get("score")) and is_num(t.get("max_score")) and t["score"] > t["max_score"]:
            bad.append(f"test #{i}: score above max_score")
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        bad.append(f"not JSON: {e}")
    return bad


def test_validator_catches_problems():
    assert validate([]) == ["not an object"]
    doc = {"score": 1, "execution_time": 1, "output": "", "output_format": "text",
           "visibility": "visible", "stdout_visibility": "hidden", "extra_data": {},
           "tests": [{"score": 1, "max_score": 1, "status": "passed", "name": "a", "number": "1",
                      "output": "", "output_format": "text", "tags": [], "visibility": "visible",
                      "extra_data": {}}]}
    assert validate(doc) == []
    doc["tests"][0]["status"] = "ok"
    doc["tests"][0]["visibility"] = "secret"
    doc["tests"][0]["tags"] = [1]
    doc["extra_data"] = {"x": float("nan")}
    assert len(validate(doc)) == 4


# ---- synthetic results ---------------------------------------------------------------

LAB = '''
[lab]
title = "Synthetic {name}"

[params]
n = {{ values = [8] }}

[[run]]
name = "main"
args = []

[[run]]
name = "thp"
args = []
requires = ["thp"]

[[check]]
name = "visible_ok"
title = "a passing check"
points = 2
run = "main"
observed = "1"
expect = [0, 2]
unit = "kB"

[[check]]
name = "visible_fail"
title = "a failing check"
points = 1.5
run = "main"
observed = "1"
expect = [5, 6]
hint = "look at the loop"

[[check]]
name = "secret"
title = "a hidden check"
points = 3
run = "main"
observed = "1"
expect = [0, 2]
hidden = true

[[check]]
name = "secret_fail"
title = "a hidden failing check"
points = 1
run = "main"
observed = "1"
expect = [5, 6]
hidden = true

[[check]]
name = "needs_thp"
title = "a skipped check"
points = 4
run = "thp"
observed = "1"
expect = [0, 2]
'''


def make_lab(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    (d / "lab.toml").write_text(LAB.format(name=name))
    return load(d)


def lab_result(tmp_path, name, error=""):
    lab = make_lab(tmp_path, name)
    c = {ch.name: ch for ch in lab.checks}
    verdicts = [
        Verdict(name, c["visible_ok"], "ok", 2.0, observed=1, expected="0..2"),
        Verdict(name, c["visible_fail"], "fail", 0.0, observed=1, expected="5..6",
                message="expected 5..6, observed 1"),
        Verdict(name, c["secret"], "ok", 3.0, observed=NS({"a": 1}), expected="0..2"),
        Verdict(name, c["secret_fail"], "fail", 0.0, observed=float("nan"), reported=float("inf"),
                expected="5..6", message="expected 5..6, observed nan"),
        Verdict(name, c["needs_thp"], "skip", 0.0, message="transparent huge pages are off",
                fix="echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"),
    ]
    run = RunResult(name="main", argv=["x"], exit=0, main_pid=1)
    return LabResult(lab, 7, {"n": 8, "size": 2.5, "t": (1, 2), "s": {1, 2}}, None,
                     runs={"main": run},
                     skipped={"thp": Feature(False, "transparent huge pages are off", "fix it")},
                     verdicts=verdicts, error=error)


FACTS = {"page_size": 4096, "thp": "never", "cgroup": None, "aslr": 2, "kernel": "6.1"}


@pytest.fixture
def doc(tmp_path):
    results = [lab_result(tmp_path, "alpha"), lab_result(tmp_path, "beta", error="compile error")]
    return results_document(results, FACTS, seed=42, elapsed=12.3456, extra={"submission": "s1"})


def test_document_validates(doc):
    assert validate(doc) == []
    json.loads(json.dumps(doc, allow_nan=False))


def test_scores_add_up(doc):
    assert len(doc["tests"]) == 10
    assert doc["score"] == pytest.approx(sum(t["score"] for t in doc["tests"]))
    assert doc["score"] == pytest.approx(2 * (2.0 + 3.0))
    assert doc["extra_data"]["max_score"] == pytest.approx(sum(t["max_score"] for t in doc["tests"]))
    assert doc["extra_data"]["max_score"] == pytest.approx(2 * (2 + 1.5 + 3 + 1))
    assert doc["execution_time"] == 12.35


def test_test_entries(doc):
    t = {(e["extra_data"]["lab"], e["extra_data"]["check"]): e for e in doc["tests"]}
    assert [e["number"] for e in doc["tests"]] == [f"{i}.{j}" for i in (1, 2) for j in range(1, 6)]
    ok = t["alpha", "visible_ok"]
    assert ok["status"] == "passed" and ok["score"] == 2.0 and ok["max_score"] == 2.0
    assert ok["name"] == "alpha: a passing check"
    assert ok["output"] == "OK: a passing check. Observed 1 kB (expected 0..2)."
    assert ok["visibility"] == "visible" and ok["tags"] == ["alpha"]
    fail = t["alpha", "visible_fail"]
    assert fail["status"] == "failed" and fail["score"] == 0 and fail["max_score"] == 1.5
    assert fail["output"] == "FAILED: a failing check. expected 5..6, observed 1.\nHint: look at the loop"
    assert fail["extra_data"]["message"] == "expected 5..6, observed 1"
    assert fail["extra_data"]["params"] == {"n": 8, "size": 2.5, "t": [1, 2], "s": "{1, 2}"}


def test_hidden_checks_are_hidden(doc):
    for e in doc["tests"]:
        hidden = e["extra_data"]["check"].startswith("secret")
        assert (e["visibility"] == "hidden") == hidden
    assert sum(e["visibility"] == "hidden" for e in doc["tests"]) == 4


def test_skipped_checks_count_nothing_and_pass(doc):
    skipped = [e for e in doc["tests"] if e["extra_data"]["verdict"] == "skip"]
    assert len(skipped) == 2
    for e in skipped:
        assert e["max_score"] == 0 and e["score"] == 0 and e["status"] == "passed"
        assert "skipped" in e["tags"]
        assert e["output"] == ("SKIPPED on the grading machine: transparent huge pages are off. "
                               "To run it: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled.")


def test_top_level(doc):
    assert doc["visibility"] == "visible" and doc["stdout_visibility"] == "hidden"
    assert doc["output_format"] == "text"
    assert "10/15 points" in doc["output"]
    assert "alpha: 5/7.5" in doc["output"] and "beta: 5/7.5 (compile error)" in doc["output"]
    x = doc["extra_data"]
    assert x["seed"] == 42 and x["submission"] == "s1"
    assert x["environment"]["cgroup"] is None
    assert x["labs"]["alpha"]["skipped_runs"] == {"thp": "transparent huge pages are off"}
    assert x["labs"]["alpha"]["runs"] == {"main": "completed"}
    assert x["labs"]["beta"]["error"] == "compile error"


def test_non_finite_numbers_are_not_written_as_bare_nan(doc):
    e = next(e for e in doc["tests"] if e["extra_data"]["check"] == "secret_fail")
    assert e["extra_data"]["observed"] == "nan" and e["extra_data"]["reported"] == "inf"
    text = json.dumps(doc)
    assert "NaN" not in text and "Infinity" not in text


def test_empty_document():
    doc = results_document([], {}, seed=0, elapsed=0.0)
    assert validate(doc) == [] and doc["score"] == 0 and doc["tests"] == []


# ---- writing -----------------------------------------------------------------------------

def leftovers(d: Path, name: str):
    return [p.name for p in d.iterdir() if p.name != name]


def test_write_atomic_creates_and_replaces(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_atomic(path, "one\n")
    assert path.read_text() == "one\n"
    old_inode = path.stat().st_ino
    write_atomic(path, "two\n")
    assert path.read_text() == "two\n"
    assert path.stat().st_ino != old_inode          # a new file renamed over the old one
    assert leftovers(path.parent, "results.json") == []


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_atomic(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "new \udc80 text")         # cannot be encoded: fails mid-write
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path, "results.json") == []

    def boom(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(resultsmod.os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(path, "newer\n")
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path, "results.json") == []


def test_write_atomic_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old\n")
    real_fdopen = os.fdopen

    class Interrupting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, text):
            self.f.write(text[:3])
            raise KeyboardInterrupt

    monkeypatch.setattr(resultsmod.os, "fdopen", lambda fd, mode: Interrupting(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "brand new\n")
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path, "results.json") == []


def test_write_results(tmp_path, doc):
    path = tmp_path / "results" / "results.json"
    write_results(path, doc)
    text = path.read_text()
    assert text.endswith("\n")
    assert validate(json.loads(text)) == []
