"""The other side of tests/test_cheats.py: correct solutions the grader has not seen.

Each file tests/alternatives/<lab>/<name>.c is a complete, correct labs/<lab>/<lab>.c
written from the student handout alone (the README and the stubs), deliberately
unlike the reference: mmap where the reference mallocs, a byte loop where it calls
memset, other helpers, another order of independent steps (its first comment says
how it differs). Every one must score full marks on every check this machine can
run, for several draws of the parameters: a check that fails one of them assumes an
implementation instead of observing the experiment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

ALT_DIR = ROOT / "tests" / "alternatives"
ALTERNATIVES = sorted(ALT_DIR.glob("*/*.c"))
SEEDS = (1, 2, 3)


def _line(v) -> str:
    return f"{v.check.name}: {v.status}: {v.message}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("source", ALTERNATIVES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_correct_alternative_scores_full_marks(grade_source, source: Path, seed: int):
    lab = source.parent.name
    res = grade_source(lab, source, seed=seed)
    assert res.build and res.build.ok, f"{lab}/{source.name} does not compile:\n{res.build.log if res.build else ''}"
    lost = [_line(v) for v in res.verdicts if v.status not in ("ok", "skip")]
    assert not lost, f"a correct solution ({lab}/{source.stem}, seed {seed}) loses: " + "; ".join(lost)
    assert res.score == sum(v.check.points for v in res.verdicts if v.status == "ok")


def test_every_lab_has_alternatives():
    labs = {p.name for p in (ROOT / "labs").iterdir() if (p / "lab.toml").is_file()}
    have = {p.parent.name for p in ALTERNATIVES}
    assert labs <= have, f"labs without a correct alternative solution: {sorted(labs - have)}"
    for p in ALTERNATIVES:
        head = p.read_text()[:600]
        assert head.lstrip().startswith("/*"), f"{p}: say in a first comment how it differs"
