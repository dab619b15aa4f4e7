"""Every lab, end to end: the reference scores full marks, compiles without a
warning, and the handout's stubs score only the "it ran" checks, never crash,
and fail with messages."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import LABS, ROOT

from grader import spec
from grader.build import first_error, make_env
from grader.handout import strip_solutions


def ran_check(name: str) -> bool:
    return name == "completes" or name.endswith("_completes")


@pytest.mark.parametrize("lab", LABS)
def test_reference_full_marks(lab, grade_reference):
    res = grade_reference(lab, seed=11)
    bad = {v.check.name: v.message for v in res.verdicts if v.status == "fail"}
    assert not bad, bad
    for v in res.verdicts:
        if v.status == "skip":
            assert v.message and v.fix, f"{v.check.name}: a skip needs a reason and a fix"
    if all(v.status == "skip" for v in res.verdicts):
        pytest.skip(f"every check of {lab} skips here: {res.verdicts[0].message}")
    assert res.score == res.max_score > 0


@pytest.mark.parametrize("lab", LABS)
def test_stub_scores_only_it_ran_checks(lab, grade_source):
    stub = strip_solutions((ROOT / "labs" / lab / f"{lab}.c").read_text(), f"{lab}.c")
    res = grade_source(lab, stub, seed=5)
    assert res.build and res.build.ok, res.build.log if res.build else "no build"
    for name, run in res.runs.items():
        assert run.signal is None and not run.limit, f"the stub's run {name} {run.describe()}"
    for v in res.verdicts:
        assert not v.internal, v.message
        if ran_check(v.check.name):
            continue
        assert v.status in ("fail", "skip"), f"{v.check.name} passes on the stub"
        if v.status == "fail":
            assert v.message, f"{v.check.name} fails without a message"
    graded = [v for v in res.verdicts if not ran_check(v.check.name)]
    if all(v.status == "skip" for v in graded):
        pytest.skip(f"every graded check of {lab} skips here: {graded[0].message}")
    assert res.score < res.max_score


@pytest.mark.parametrize("lab", LABS)
def test_every_check_can_be_seen_failing_or_skipped_on_the_stub(lab):
    """A lab whose every check is an "it ran" check would grade nothing."""
    checks = spec.load(ROOT / "labs" / lab).checks
    assert any(not ran_check(c.name) for c in checks)


def test_reference_compiles_without_warnings(session_build, tmp_path):
    p = subprocess.run(["make", "-C", str(ROOT), f"BUILD={tmp_path / 'b'}", "build",
                        "CFLAGS=-O2 -g -Werror"], env=make_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_other_flags_rebuild_the_library_and_the_labs(tmp_path):
    """make does not track flags by itself: build/common/.flags records them, so a build
    folder made with other CFLAGS (or CC) is rebuilt, not reused as is (the batch copies
    the course library from build/ when make finds it up to date)."""
    build = tmp_path / "b"

    def make(*args):
        p = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), f"BUILD={build}", *args,
                            str(build / "labs" / "maps" / "maps")],
                           capture_output=True, text=True, env=make_env())
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    first = make()
    assert " -O2 -g " in (build / "common" / ".flags").read_text()
    assert "-c common/" in first and "labs/maps/maps.c" in first
    assert "up to date" in make()                   # the same flags: nothing is redone
    again = make("CFLAGS=-O1")
    assert " -O1 " in (build / "common" / ".flags").read_text()
    assert again.count("-c common/") == len(list((ROOT / "common").glob("*.c"))), again
    assert "-O1" in again.splitlines()[-1] and "labs/maps/maps.c" in again.splitlines()[-1]
    assert "up to date" in make("CFLAGS=-O1")


def test_a_failed_compilation_is_summed_up_by_its_error():
    """Each check of a lab that did not compile names the error, not the first line that
    holds the word: make echoes command lines (common/error.c, a student called terror)."""
    made = ("cc -std=gnu11 -O2 -g -Icommon -c common/error.c -o build/common/error.o\n"
            "cc -std=gnu11 -O2 -g -Icommon /out/.work/terror/src/maps/maps.c -o /out/maps\n")
    assert first_error(made + "/out/.work/terror/src/maps/maps.c:3:5: error: expected ';'\n"
                       "collect2: error: ld returned 1 exit status\n").endswith("3:5: error: expected ';'")
    link = made + ("/usr/bin/ld: /tmp/cc1.o: in function `main':\n"
                   "maps.c:(.text+0x1a): undefined reference to `major'\n"
                   "collect2: error: ld returned 1 exit status\n")
    assert first_error(link) == "maps.c:(.text+0x1a): undefined reference to `major'"
    assert first_error("cc1: error: unrecognized option\n") == "cc1: error: unrecognized option"
    assert first_error("error: the compilation was stopped: time limit\nx.c:1:1: error: a\n") \
        == "error: the compilation was stopped: time limit"
    assert first_error(made + "make: *** No rule to make target 'x'.  Stop.\n").startswith("make: ***")
    assert first_error("x.c:1:1: error: " + "y" * 1000).endswith("...")
    assert first_error("") == "(the compiler said nothing)"


def test_make_help_lists_every_lab():
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], env=make_env(),
                         capture_output=True, text=True, check=True).stdout
    for lab in LABS:
        assert f"make lab-{lab}" in out


def test_grade_command_writes_results_and_exit_status(session_build, tmp_path):
    """python3 -m grader grade: full marks exit 0, a Gradescope document with
    one test per check of every lab."""
    results = tmp_path / "results.json"
    p = subprocess.run(["/usr/bin/python3", "-m", "grader", "grade", "--seed", "3", "--quiet",
                        "--results", str(results)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Score: " in p.stdout
    doc = json.loads(results.read_text())
    n_checks = sum(len(spec.load(ROOT / "labs" / lab).checks) for lab in LABS)
    assert len(doc["tests"]) == n_checks
    assert doc["score"] == sum(t["score"] for t in doc["tests"])
    assert doc["extra_data"]["environment"]["page_size"] > 0


def test_oom_an_allocator_that_gets_through_is_ended_by_the_grader(grade_source):
    """Here the adj run's allocator dies with the bystander, elsewhere it gets through:
    one that asks for little always does, and the grader then ends it at
    'allocator_done' with the drawn signal (a capture), which the lab must decode."""
    from grader import env as envmod
    memcg = envmod.feature("memcg")
    if not memcg.ok:    # the lab's kill part needs a memory cgroup of its own
        pytest.skip(f"{memcg.reason} ({memcg.fix})")
    src = (ROOT / "labs" / "oom" / "oom.c").read_text()
    small = src.replace("allocator_len = limit - limit / 8 - limit / 16", "allocator_len = limit / 8")
    assert small != src
    seen = set()
    for seed in (1, 2, 3):
        res = grade_source("oom", small, seed=seed)
        if "adj" in res.skipped:
            pytest.skip(f"the adj run cannot run here: {res.skipped['adj'].reason}")
        run, sig = res.runs["adj"], res.values["end_signal"]
        assert run.captures.get("ended") == sig, run.captures.get("ended")
        assert run.figures["allocator_fate"] == f"killed by {sig}"
        assert "a signal from outside ended it" in run.stdout
        assert run.exit == 0 and not run.leftovers
        seen.add(sig)
    assert len(seen) > 1, "three draws, one signal: the draw does not vary"
