"""grader/checks.py: verdicts of checks on synthetic runs (no lab is executed)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import checks as checksmod  # noqa: E402
from grader import env as envmod  # noqa: E402
from grader.checks import derive_values, evaluate, fill_placeholders, fmt  # noqa: E402
from grader.env import Feature  # noqa: E402
from grader.expr import NS, ExprError, Unavailable  # noqa: E402
from grader.procfs import ProcError, parse_maps  # noqa: E402
from grader.runner import Checkpoint, Message, RunResult  # noqa: E402
from grader.spec import load  # noqa: E402

FACTS = {"page_size": 4096, "pmd_size": 2 << 20, "thp": "madvise", "aslr": 2, "cgroup": 2,
         "zero_page": True}

HEAD = '''
[lab]
title = "Synthetic"

[params]
n = { values = [8] }

[derive]
n2 = "n * 2"
pages = "n * MiB // env.page_size"

[[run]]
name = "main"
args = []

[[run]]
name = "other"
args = []
'''


def make_lab(tmp_path, *checks: str):
    d = tmp_path / "synth"
    d.mkdir(exist_ok=True)
    text = HEAD
    for i, body in enumerate(checks):
        text += f'\n[[check]]\nname = "c{i}"\ntitle = "check {i}"\npoints = 2\n' + body + "\n"
    (d / "lab.toml").write_text(text)
    return load(d)


def cp(name, seq=1, pid=100, role="main", held=True, error="", **obs):
    data = {"minflt": 0, "maps": parse_maps("1000-3000 rw-p 00000000 00:00 0\n")}
    data.update(obs)
    return Checkpoint(name, seq, pid, role, held, data, error, 0.1)


def make_run(name="main", *, exit=0, sig=None, main_pid=100, figures=None, cps=(), captures=None,
             **kw):
    return RunResult(name=name, argv=["lab"], exit=exit, signal=sig, main_pid=main_pid,
                     figures=dict(figures or {}), checkpoints=list(cps),
                     captures=dict(captures or {}), **kw)


STD_CPS = (cp("a", 1, minflt=10), cp("b", 2, minflt=25, rss_kb=1000))


def verdict(tmp_path, body, run=None, *, others=None, skipped=None, params=None):
    lab = make_lab(tmp_path, body)
    values = derive_values(lab, params or {"n": 8}, FACTS)
    runs = {"main": run if run is not None else make_run(cps=STD_CPS)}
    runs.update(others or {})
    return evaluate(lab, lab.checks[0], runs, skipped or {}, values, FACTS)


RANGE = 'run = "main"\nobserved = "cp.b.minflt - cp.a.minflt"\n'


# ---- ranges ----------------------------------------------------------------------

def test_range_pass(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]')
    assert (v.status, v.score, v.max_score, v.message) == ("ok", 2.0, 2.0, "")
    assert v.observed == 15 and v.expected == "10..20" and not v.internal


def test_range_bounds_are_inclusive_and_may_be_expressions(tmp_path):
    assert verdict(tmp_path, RANGE + 'expect = [15, 15]').status == "ok"
    assert verdict(tmp_path, RANGE + 'expect = ["n2 - 1", "n2"]').status == "ok"     # 15..16
    assert verdict(tmp_path, RANGE + 'expect = ["n2 + 1", "n2 * 2"]').status == "fail"


def test_range_fail_message(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [0, "n"]')
    assert (v.status, v.score, v.max_score) == ("fail", 0.0, 2.0)
    assert v.message == "expected 0..8, observed 15"
    assert v.expected == "0..8"


def test_range_fail_message_with_unit_and_single_value(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [1, 2]\nunit = "kB"')
    assert v.message == "expected 1..2 kB, observed 15 kB"
    v = verdict(tmp_path, RANGE + 'expect = [0, 0]')
    assert v.message == "expected 0, observed 15"


def test_range_fail_with_expected_text_fills_placeholders(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [0, "n"]\nexpected_text = "at most {n} faults"')
    assert v.message == "expected at most 8 faults, observed 15"


@pytest.mark.parametrize("observed", ['"True"', "\"'15'\"", '"[15]"', '"None"'])
def test_range_needs_a_number(tmp_path, observed):
    v = verdict(tmp_path, f'run = "main"\nobserved = {observed}\nexpect = [0, 100]')
    assert v.status == "fail" and v.message.startswith("expected 0..100, observed ")
    assert not v.internal


def test_float_observation_formatting(tmp_path):
    v = verdict(tmp_path, 'run = "main"\nobserved = "2 / 3"\nexpect = [0, 0.5]')
    assert v.message == "expected 0..0.5, observed 0.6667"


# ---- boolean expectations ---------------------------------------------------------

def test_boolean_expect_pass(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = "value == 15 and has_cp(\'a\')"')
    assert v.status == "ok" and v.score == 2.0


def test_boolean_expect_fail_with_expected_text_placeholders(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = "value == n"\nexpected_text = "{n} faults (n2={n2})"')
    assert v.status == "fail"
    assert v.expected == "8 faults (n2=16)"
    assert v.message == "expected 8 faults (n2=16), observed 15"


def test_boolean_expect_fail_without_expected_text_shows_the_condition(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = "value < 3"\nunit = "pages"')
    assert v.message == "expected value < 3, observed 15 pages"


def test_unknown_placeholder_is_left_as_is():
    assert fill_placeholders("{n} and {zz}", {"n": 1}) == "1 and {zz}"


# ---- reports ------------------------------------------------------------------------

def test_report_within_tolerance(tmp_path):
    run = make_run(cps=STD_CPS, figures={"faults": 20})
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nreport = "fig.faults"\nagree = 5', run)
    assert v.status == "ok" and v.reported == 20
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nreport = "fig.faults"\nagree = "n - 3"', run)
    assert v.status == "ok"


def test_report_outside_tolerance_names_both_values(tmp_path):
    run = make_run(cps=STD_CPS, figures={"faults": 21})
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nreport = "fig.faults"\nagree = 5\nunit = "kB"',
                run)
    assert v.status == "fail" and v.score == 0 and v.reported == 21
    assert v.message == ("the lab reported 21 kB, but the kernel's own counters say 15 kB "
                         "(allowed difference: 5)")


def test_report_default_tolerance_is_exact(tmp_path):
    run = make_run(cps=STD_CPS, figures={"faults": 16})
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nreport = "fig.faults"', run)
    assert "reported 16" in v.message and "say 15" in v.message
    run = make_run(cps=STD_CPS, figures={"faults": 15.0})
    assert verdict(tmp_path, RANGE + 'expect = [10, 20]\nreport = "fig.faults"', run).status == "ok"


def test_report_is_not_checked_when_the_observation_fails(tmp_path):
    run = make_run(cps=STD_CPS, figures={"faults": 999})
    v = verdict(tmp_path, RANGE + 'expect = [0, 1]\nreport = "fig.faults"', run)
    assert v.message == "expected 0..1, observed 15" and v.reported is None


def test_non_numeric_report_must_equal(tmp_path):
    body = 'run = "main"\nobserved = "\'heap\'"\nexpect = "value in [\'heap\', \'mmap\']"\nreport = "fig.where"'
    assert verdict(tmp_path, body, make_run(figures={"where": "heap"})).status == "ok"
    v = verdict(tmp_path, body, make_run(figures={"where": "mmap"}))
    assert v.status == "fail"
    assert v.message == "the lab reported mmap, but the grader observed heap"


def test_boolean_report_is_compared_for_equality(tmp_path):
    body = 'run = "main"\nobserved = "cp.b.minflt > 0"\nexpect = "value"\nreport = "fig.ok == 1"'
    assert verdict(tmp_path, body, make_run(cps=STD_CPS, figures={"ok": 1})).status == "ok"
    v = verdict(tmp_path, body, make_run(cps=STD_CPS, figures={"ok": 0}))
    assert v.message == "the lab reported no, but the grader observed yes"


# ---- requirements ----------------------------------------------------------------------

def test_require_failure_uses_why_with_placeholders(tmp_path):
    body = RANGE + ('expect = [10, 20]\nrequire = [\n  "cp.b.rss_kb > 0",\n'
                    '  { expr = "cp.b.rss_kb > n * 1024", why = "Rss below {n} MiB (pages={pages})" },\n'
                    '  { expr = "1 / 0", why = "never evaluated" },\n]')
    v = verdict(tmp_path, body)
    assert v.status == "fail" and v.score == 0
    assert v.message == "Rss below 8 MiB (pages=2048)"
    assert not v.internal


def test_require_without_why(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nrequire = ["cp.b.rss_kb > 5000"]')
    assert v.message == "requirement failed: cp.b.rss_kb > 5000"


def test_require_pass(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nrequire = [{ expr = "cp.b.rss_kb == 1000", why = "x" }]')
    assert v.status == "ok"


# ---- things missing -----------------------------------------------------------------------

def test_missing_checkpoint(tmp_path):
    v = verdict(tmp_path, 'run = "main"\nobserved = "cp.zz.minflt"\nexpect = [0, 1]')
    assert v.status == "fail" and not v.internal
    assert "never reached checkpoint 'zz'" in v.message
    assert v.message == "the lab never reached checkpoint 'zz' (the run completed)"


def test_checkpoint_that_did_not_wait_or_could_not_be_read(tmp_path):
    run = make_run(cps=(cp("a", 1, held=False), cp("b", 2, error="stat: no ')' after comm")))
    v = verdict(tmp_path, 'run = "main"\nobserved = "cp.a.minflt"\nexpect = [0, 1]', run)
    assert v.message == "at checkpoint 'a' the process did not wait for the grader"
    v = verdict(tmp_path, 'run = "main"\nobserved = "cp.b.minflt"\nexpect = [0, 1]', run)
    assert v.message == "checkpoint 'b': stat: no ')' after comm"


def test_first_good_checkpoint_of_a_name_is_used(tmp_path):
    run = make_run(cps=(cp("a", 1, held=False, minflt=1), cp("a", 2, minflt=5), cp("a", 3, minflt=9)))
    v = verdict(tmp_path, 'run = "main"\nobserved = "cp.a.minflt"\nexpect = [0, 100]', run)
    assert v.observed == 5


def test_other_runs_checkpoints_use_the_first_good_one_too(tmp_path):
    other = make_run("other", cps=(cp("a", 1, held=False, minflt=1), cp("a", 2, minflt=5),
                                   cp("a", 3, minflt=9)), figures={"x": 3})
    v = verdict(tmp_path, 'run = "main"\nobserved = "runs.other.cp.a.minflt + runs.other.fig.x"\n'
                'expect = [0, 100]', others={"other": other})
    assert v.observed == 8
    v = verdict(tmp_path, 'run = "main"\nobserved = "runs.other.cp.zz"\nexpect = [0, 100]',
                others={"other": other})
    assert "never reached checkpoint 'zz'" in v.message
    v = verdict(tmp_path, 'run = "main"\nobserved = "runs.third.exit"\nexpect = [0, 100]')
    assert v.message == "run 'third' did not take place"


def test_lab_that_never_connected(tmp_path):
    run = make_run(main_pid=None)
    v = verdict(tmp_path, 'run = "main"\nobserved = "cp.a.minflt"\nexpect = [0, 1]', run)
    assert v.message.startswith("the lab never connected to the grader")
    v = verdict(tmp_path, 'run = "main"\nobserved = "fig.x"\nexpect = [0, 1]', run)
    assert v.message.startswith("the lab never connected to the grader, so it reported nothing")


def test_missing_figure(tmp_path):
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nreport = "fig.faults"')
    assert v.status == "fail" and not v.internal
    assert v.message == "the lab did not report figure 'faults'"
    v = verdict(tmp_path, 'run = "main"\nobserved = "fig[\'a.b\']"\nexpect = [0, 1]')
    assert v.message == "the lab did not report figure 'a.b'"


def test_crashed_run_is_named_in_the_message(tmp_path):
    run = make_run(exit=None, sig=signal.SIGSEGV, cps=STD_CPS)
    v = verdict(tmp_path, RANGE + 'expect = [0, 1]', run)
    assert v.message == "expected 0..1, observed 15 (the run killed by SIGSEGV)"
    # a missing checkpoint already says how the run ended: not twice
    v = verdict(tmp_path, 'run = "main"\nobserved = "cp.zz.minflt"\nexpect = [0, 1]', run)
    assert v.message == "the lab never reached checkpoint 'zz' (the run killed by SIGSEGV)"
    assert v.message.count("the run") == 1
    # a check can still pass on a crashed run
    assert verdict(tmp_path, RANGE + 'expect = [10, 20]', run).status == "ok"


@pytest.mark.parametrize("kw, words", [
    ({"exit": 3}, "exited with status 3"),
    ({"limit": "time", "duration": 30.04}, "stopped at the time limit (30.0 s)"),
    ({"limit": "output"}, "stopped: output flood (more than 16 MiB)"),
    ({"exit": None, "sig": signal.SIGKILL}, "killed by SIGKILL (memory exhausted?)"),
])
def test_run_end_in_failure_messages(tmp_path, kw, words):
    run = make_run(cps=STD_CPS, **kw)
    v = verdict(tmp_path, RANGE + 'expect = [0, 1]', run)
    assert v.message.endswith(f"(the run {words})")


def test_run_that_did_not_take_place(tmp_path):
    lab = make_lab(tmp_path, RANGE + 'expect = [0, 1]')
    v = evaluate(lab, lab.checks[0], {}, {}, derive_values(lab, {"n": 8}, FACTS), FACTS)
    assert v.status == "fail" and v.message == "run 'main' did not take place"


def test_run_fields(tmp_path):
    run = make_run(cps=STD_CPS, rusage={"minflt": 77}, stdout="hello\n")
    v = verdict(tmp_path, 'run = "main"\nobserved = "run.rusage.minflt"\n'
                'expect = "value == 77 and run.ok and run.exit == 0 and run.main_pid == 100 '
                'and \'hello\' in run.stdout"', run)
    assert v.status == "ok", v.message


def test_trace_and_messages_in_the_namespace(tmp_path):
    run = make_run(cps=STD_CPS, messages=[Message(1, 100, "hello", "synth"), Message(2, 100, "cp", "a")],
                   trace=[{"call": "mmap", "args": "NULL, 4096", "at": 0.5}])
    v = verdict(tmp_path, 'run = "main"\nobserved = "len(trace) + len(messages)"\n'
                'expect = "value == 3 and messages[1].name == \'a\' and trace[0].call == \'mmap\'"', run)
    assert v.status == "ok", v.message


# ---- skips ---------------------------------------------------------------------------------

@pytest.fixture
def no_strace(monkeypatch):
    def feature(name):
        if name == "strace":
            return Feature(False, "ptrace is refused here", "run with --cap-add SYS_PTRACE")
        return Feature(True)
    monkeypatch.setattr(envmod, "feature", feature)


def test_feature_missing_skips(tmp_path, no_strace):
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nrequires = ["strace"]')
    assert v.status == "skip" and v.score == 0 and v.max_score == 0
    assert v.message == "ptrace is refused here"
    assert v.fix == "run with --cap-add SYS_PTRACE"


def test_feature_present_does_not_skip(tmp_path, no_strace):
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nrequires = ["thp"]')
    assert v.status == "ok" and v.max_score == 2


def test_skipped_run_skips_its_checks(tmp_path):
    f = Feature(False, "transparent huge pages are off", "echo madvise > ...")
    lab = make_lab(tmp_path, RANGE + 'expect = [10, 20]')
    v = evaluate(lab, lab.checks[0], {}, {"main": f}, {"n": 8}, FACTS)
    assert (v.status, v.score, v.max_score, v.message, v.fix) == \
        ("skip", 0.0, 0.0, "transparent huge pages are off", "echo madvise > ...")


def test_unavailable_capture_skips(tmp_path):
    run = make_run(cps=STD_CPS, captures={"changed": Unavailable("may not read memory", "run as root")})
    v = verdict(tmp_path, 'run = "main"\nobserved = "cap.changed"\nexpect = [0, 0]', run)
    assert (v.status, v.max_score, v.message, v.fix) == ("skip", 0.0, "may not read memory", "run as root")
    # also when only a require reads it
    v = verdict(tmp_path, RANGE + 'expect = [10, 20]\nrequire = ["cap.changed == 0"]', run)
    assert v.status == "skip"


def test_failed_capture_and_absent_capture_fail(tmp_path):
    run = make_run(cps=STD_CPS, captures={"changed": ProcError("/proc/1/mem: short read at 0x1000"),
                                          "good": 3})
    v = verdict(tmp_path, 'run = "main"\nobserved = "cap.changed"\nexpect = [0, 0]', run)
    assert v.status == "fail" and not v.internal
    assert v.message == "capture 'changed': /proc/1/mem: short read at 0x1000"
    v = verdict(tmp_path, 'run = "main"\nobserved = "cap.nope"\nexpect = [0, 0]', run)
    assert v.message == "capture 'nope' was not taken (the run completed)"
    assert verdict(tmp_path, 'run = "main"\nobserved = "cap.good"\nexpect = [3, 3]', run).status == "ok"


# ---- broken checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    'run = "main"\nobserved = "1 / 0"\nexpect = [0, 1]',
    'run = "main"\nobserved = "cp.a.minflt + \'x\'"\nexpect = [0, 1]',
    'run = "main"\nobserved = "nosuchname"\nexpect = [0, 1]',
    'run = "main"\nobserved = "nosuchfn(1)"\nexpect = [0, 1]',
    'run = "main"\nobserved = "1"\nexpect = ["1", "[][0]"]',
    'run = "main"\nobserved = "1"\nexpect = "value == zz"',
    'run = "main"\nobserved = "1"\nexpect = [0, 1]\nreport = "1"\nagree = "1 / 0"',
    'run = "main"\nobserved = "1"\nexpect = [0, 1]\nrequire = ["undefined_name"]',
])
def test_expr_error_is_internal(tmp_path, body):
    v = verdict(tmp_path, body)
    assert v.status == "fail" and v.internal and v.score == 0
    assert v.message.startswith("grader error in this check (") and v.message.endswith("please report it")


# ---- derive_values, fmt --------------------------------------------------------------------

def test_derive_values_in_order(tmp_path):
    d = tmp_path / "der"
    d.mkdir()
    (d / "lab.toml").write_text(HEAD.replace(
        '[derive]\nn2 = "n * 2"\npages = "n * MiB // env.page_size"',
        '[derive]\nb = "n + 1"\na = "b * 2"\nc = "a * env.page_size + KiB"\nd = "join(\'-\', [n, b, a])"')
        + '\n[[check]]\nname = "x"\ntitle = "x"\npoints = 1\nrun = "main"\nobserved = "1"\nexpect = [1, 1]\n')
    lab = load(d)
    values = derive_values(lab, {"n": 3}, FACTS)
    assert values == {"n": 3, "b": 4, "a": 8, "c": 8 * 4096 + 1024, "d": "3-4-8"}
    assert list(values) == ["n", "b", "a", "c", "d"]


def test_derive_values_cannot_use_a_later_name(tmp_path):
    d = tmp_path / "der2"
    d.mkdir()
    (d / "lab.toml").write_text(HEAD.replace('n2 = "n * 2"', 'n2 = "later * 2"\nlater = "n"')
                                + '\n[[check]]\nname = "x"\ntitle = "x"\npoints = 1\nrun = "main"\n'
                                  'observed = "1"\nexpect = [1, 1]\n')
    with pytest.raises(ExprError, match="later"):
        derive_values(load(d), {"n": 3}, FACTS)


def test_derive_values_missing_fact(tmp_path):
    lab = make_lab(tmp_path, RANGE + 'expect = [0, 1]')
    from grader.expr import Missing
    with pytest.raises(Missing, match="environment fact 'page_size'"):
        derive_values(lab, {"n": 8}, {})


@pytest.mark.parametrize("v, unit, want", [
    (None, "", "-"), (True, "", "yes"), (False, "kB", "no"), (3, "", "3"), (3, "kB", "3 kB"),
    (4.0, "kB", "4 kB"), (2 / 3, "", "0.6667"), (1e20, "", "1e+20"), (float("nan"), "", "nan"),
    ("heap", "", "heap"), ("x" * 100, "", "x" * 57 + "..."), ([1, 2], "", "[1, 2]"),
])
def test_fmt(v, unit, want):
    assert fmt(v, unit) == want


def test_constants():
    assert checksmod.CONSTANTS == {"KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}


def test_a_check_passed_without_its_trace_says_so(monkeypatch):
    """Where strace cannot run, a check that reads the trace passes on /proc and the
    counters alone (its trace parts are vacuous): its verdict names what is missing."""
    oom = load(ROOT / "labs" / "oom")
    by_name = {c.name: c for c in oom.checks}
    traced = by_name["scores_read"]                 # requires `opened(...)` of the trace
    untraced = next(c for c in oom.checks
                    if not checksmod._TRACE_WORDS.search(" ".join(
                        [c.observed, *(c.expect if isinstance(c.expect, list) else [c.expect]),
                         *(r.expr for r in c.require)])))
    monkeypatch.setattr(envmod, "feature", lambda name: Feature(True))
    assert checksmod._unconfirmed(oom, traced) is None
    gone = Feature(False, "strace is not installed", "apt-get install strace")
    monkeypatch.setattr(envmod, "feature", lambda name: gone if name == "strace" else Feature(True))
    assert checksmod._unconfirmed(oom, traced) is gone
    assert checksmod._unconfirmed(oom, untraced) is None
    maps = load(ROOT / "labs" / "maps")             # no run of it is traced
    assert all(checksmod._unconfirmed(maps, c) is None for c in maps.checks)
    faults = load(ROOT / "labs" / "faults")         # every run traced: its figures read
    assert any(checksmod._unconfirmed(faults, c) is gone for c in faults.checks)


def test_a_note_on_a_passed_check_is_shown():
    from grader.checks import Verdict
    from grader.report import verdict_lines
    from grader.results import test_entry
    check = load(ROOT / "labs" / "oom").checks[0]
    v = Verdict("oom", check, "ok", check.points, observed=1, expected="1",
                message="not cross-checked against the lab's system calls: strace is not installed",
                fix="apt-get install strace")
    assert any("note: not cross-checked" in ln and "apt-get install strace" in ln
               for ln in verdict_lines(v, color=False))
    entry = test_entry(v, "1.1", {})
    assert entry["status"] == "passed" and "Note: not cross-checked" in entry["output"]


def test_numa_topology_must_be_read_not_known(monkeypatch):
    """The right distance table is not enough: on most two-node machines 10/20 (the
    kernel's default) is right by heart. The lab must have opened a node's distance
    file before checkpoint 'topology' (where strace works)."""
    numa = load(ROOT / "labs" / "numa")
    check = next(c for c in numa.checks if c.name == "topology")
    monkeypatch.setattr(envmod, "feature", lambda name: Feature(True))
    facts = {**FACTS, "numa_nodes": 2, "numa_distances": [[10, 27], [27, 10]]}
    values = derive_values(numa, {"size_mib": 8, "node_pick": 0}, facts)
    figures = {"nodes": 2, "distance.0.0": 10, "distance.0.1": 27, "distance.1.0": 27,
               "distance.1.1": 10}
    opened = {"call": "openat", "pid": 100, "at": 1.5, "ret_int": 3,
              "args": 'AT_FDCWD, "/sys/devices/system/node/node1/distance", O_RDONLY'}
    other = {**opened, "args": 'AT_FDCWD, "/sys/devices/system/node/node1/meminfo", O_RDONLY'}

    sent = [Message(1, 100, "fig", "nodes", 2), Message(2, 100, "cp", "topology")]

    def grade(trace):
        run = make_run(figures=figures, cps=(cp("topology", 2),), trace=trace, messages=sent)
        return evaluate(numa, check, {"main": run}, {}, values, facts)
    assert grade([opened]).status == "ok"
    v = grade([other])
    assert v.status == "fail" and "never opened a node's distance file" in v.message
    late = {**opened, "at": 2.5}                    # after the checkpoint: too late
    assert grade([late]).status == "fail"
    wrong = {**figures, "distance.0.1": 20, "distance.1.0": 20}     # read, but not reported
    run = make_run(figures=wrong, cps=(cp("topology", 2),), trace=[opened], messages=sent)
    assert evaluate(numa, check, {"main": run}, {}, values, facts).status == "fail"


# ---- labs/oom: the allocator's fate cannot be guessed ------------------------------

def _oom_adj_run(allocator_fate, *, done=True, ended="SIGUSR1"):
    group = "/sys/fs/cgroup/memlab-oom-7"
    cps = [cp("scores", 1, pid=100), cp("raised", 2, pid=100), cp("lowered", 3, pid=100),
           cp("bystander_holding", 4, pid=201, role="child", oom_score_adj=1000,
              rss_anon_kb=64 * 1024, cgroup=f"0::{group}\n"),
           cp("allocator_start", 5, pid=202, role="child", oom_score_adj=0, cgroup=f"0::{group}\n")]
    captures = {"group": NS({"oom_kill": 1 if done else 2}), "fates": ["gone", "gone"]}
    if done:
        cps.append(cp("allocator_done", 6, pid=202, role="child"))
        captures["ended"] = ended
    cps.append(cp("after_oom", 7, pid=100, cgroup="0::/\n"))
    return make_run("adj", cps=cps, captures=captures,
                    figures={"cgroup": group, "bystander_fate": "killed by SIGKILL",
                             "allocator_fate": allocator_fate})


@pytest.mark.parametrize("fate, done, ok", [
    ("killed by SIGUSR1", True, True),       # decoded: the grader's signal
    ("killed by signal 10 (User defined signal 1)", True, True),    # by its number
    ("completed", True, False),              # the story a lab guesses when it got through
    ("killed by SIGKILL", True, False),      # the story a lab guesses when the race kills it
    ("killed by SIGKILL", False, True),      # killed by the OOM killer, before allocator_done
    ("completed", False, False),
])
def test_oom_allocator_fate_is_the_one_the_grader_caused(fate, done, ok):
    lab = load(ROOT / "labs" / "oom")
    check = next(c for c in lab.checks if c.name == "adj_picks_the_victim")
    values = derive_values(lab, {"limit_mib": 256, "adj_raise": 500, "end_signal": "SIGUSR1"}, FACTS)
    v = evaluate(lab, check, {"adj": _oom_adj_run(fate, done=done)}, {}, values, FACTS)
    if v.status == "skip":
        pytest.skip(v.message)
    assert (v.status == "ok") == ok, v.message
    if not ok:
        assert v.message.startswith("the allocator's fate the lab reported is not what the grader saw")
        assert "SIGUSR1" in v.message
