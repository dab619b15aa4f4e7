"""grader/spec.py: loading and validating lab.toml, drawing parameters."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.expr import parse  # noqa: E402
from grader.spec import Param, SpecError, discover, fill_placeholders_args, load  # noqa: E402

HEAD = '''
[lab]
title = "A small lab"

[params]
size = { range = [4, 16], step = 4 }

[derive]
twice = "size * 2"

[[run]]
name = "main"
args = ["--size", "{size}"]
'''

CHECK = '''
[[check]]
name = "c1"
title = "a check"
points = 1
run = "main"
observed = "cp.a.minflt"
expect = [0, 10]
'''


def write(tmp_path: Path, text: str, name: str = "small") -> Path:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "lab.toml").write_text(text)
    return d


def load_text(tmp_path, text, name="small"):
    return load(write(tmp_path, text, name))


def spec_error(tmp_path, text, name="small") -> str:
    d = write(tmp_path, text, name)
    with pytest.raises(SpecError) as e:
        load(d)
    msg = str(e.value)
    assert str(d / "lab.toml") in msg, msg      # every error names the file
    return msg


# ---- a good lab ------------------------------------------------------------------

def test_minimal_lab_loads(tmp_path):
    lab = load_text(tmp_path, HEAD + CHECK)
    assert lab.name == "small"
    assert lab.dir == tmp_path / "small"
    assert lab.source == tmp_path / "small" / "small.c"
    assert lab.title == "A small lab"
    assert lab.timeout == 30.0
    assert lab.ldlibs == ""
    assert list(lab.params) == ["size"]
    assert lab.derive == {"twice": "size * 2"}
    assert list(lab.runs) == ["main"]
    assert lab.runs["main"].show is True          # the first run is shown by default
    assert lab.runs["main"].args == ["--size", "{size}"]
    c = lab.checks[0]
    assert (c.name, c.points, c.run, c.observed, c.expect, c.report, c.agree) == \
        ("c1", 1.0, "main", "cp.a.minflt", ["0", "10"], None, "0")
    assert lab.max_points == 1.0


def test_full_lab_loads(tmp_path):
    text = '''
[lab]
title = "Full"
timeout = 12
ldlibs = "-lm"

[params]
size = { range = [4, 16], step = 4 }
fill = { values = [1, 2, 3] }
frac = { range = [0.1, 0.9], step = 0.05 }

[derive]
a = "size * MiB"
b = "a // env.page_size"

[[run]]
name = "first"
args = ["--fill", "{fill}"]

[[run]]
name = "second"
args = ["{b}"]
env = { MALLOC_X = "{size}" }
strace = ["mmap", "brk"]
norandom = true
requires = ["thp"]
show = true

[[run.capture]]
at = "written"
name = "changed"
addr = "fig.buf"
length = "a"
count_pages_not = "fill"

[[check]]
name = "one"
title = "one"
points = 2.5
run = "second"
observed = "cap.changed"
expect = "value == b and has_cp('written')"
report = "fig.changed"
agree = 8
require = [
  "run.exit == 0",
  { expr = "cp.written.minflt > 0", why = "no faults for {size}" },
]
requires = ["strace"]
hint = "look here"
hidden = true
expected_text = "{b} pages"
unit = "kB"
'''
    lab = load_text(tmp_path, text, "full")
    assert lab.timeout == 12.0 and lab.ldlibs == "-lm"
    assert lab.params["fill"].values == [1, 2, 3]
    assert lab.params["frac"].step == 0.05
    r1, r2 = lab.runs["first"], lab.runs["second"]
    assert r1.show is False and r2.show is True
    assert r2.env == {"MALLOC_X": "{size}"}
    assert r2.strace == ["mmap", "brk"]
    assert r2.norandom is True and r2.requires == ["thp", "setarch"]   # norandom adds setarch
    cap = r2.captures[0]
    assert (cap.at, cap.name, cap.addr, cap.length, cap.count_pages_not) == \
        ("written", "changed", "fig.buf", "a", "fill")
    c = lab.checks[0]
    assert c.points == 2.5 and c.expect == "value == b and has_cp('written')"
    assert c.report == "fig.changed" and c.agree == "8"
    assert [(r.expr, r.why) for r in c.require] == [("run.exit == 0", ""),
                                                    ("cp.written.minflt > 0", "no faults for {size}")]
    assert c.requires == ["strace"] and c.hidden is True and c.hint == "look here"
    assert c.expected_text == "{b} pages" and c.unit == "kB"


# ---- validation errors name the file and the key -------------------------------

def test_invalid_toml(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK + "\nthis is = = not toml\n")
    assert "not valid TOML" in msg


def test_missing_file(tmp_path):
    d = tmp_path / "nolab"
    d.mkdir()
    with pytest.raises(SpecError, match="cannot read"):
        load(d)


@pytest.mark.parametrize("extra, where, key", [
    ("\n[other]\nx = 1\n", "", "other"),
])
def test_unknown_top_level_key(tmp_path, extra, where, key):
    msg = spec_error(tmp_path, HEAD + CHECK + extra)
    assert "unknown key" in msg and key in msg


def test_unknown_key_in_lab_table(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('title = "A small lab"', 'title = "x"\ntimout = 3') + CHECK)
    assert "[lab]" in msg and "timout" in msg and "unknown key" in msg


def test_unknown_key_in_run(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('name = "main"', 'name = "main"\nargv = []') + CHECK)
    assert "[[run]] #1" in msg and "argv" in msg


def test_strace_groups_are_expanded(tmp_path):
    """A run's strace list may name groups (functions.TRACE_GROUPS): each is expanded,
    every call once, in the order first named; an unknown group is an error."""
    from grader.functions import FILE_CALLS, READ_CALLS
    lab = load(write(tmp_path, HEAD.replace('name = "main"', 'name = "main"\nstrace = ["read", "@files", "@reads"]') + CHECK))
    assert lab.runs["main"].strace == ["read", *FILE_CALLS, *[c for c in READ_CALLS if c != "read"]]
    msg = spec_error(tmp_path, HEAD.replace('name = "main"', 'name = "main"\nstrace = ["@everything"]') + CHECK)
    assert "unknown group '@everything'" in msg and "@files" in msg


def test_unknown_key_in_check(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK + 'tolerance = 3\n')
    assert "[[check]] #1" in msg and "tolerance" in msg


def test_unknown_key_in_param(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace("step = 4", "step = 4, stride = 2") + CHECK)
    assert "[params.size]" in msg and "stride" in msg


def test_unknown_key_in_capture(tmp_path):
    text = HEAD + '''
[[run.capture]]
at = "a"
name = "n"
addr = "1"
length = "2"
count_pages_not = "0"
colour = "red"
''' + CHECK
    msg = spec_error(tmp_path, text)
    assert "capture #1" in msg and "colour" in msg


def test_capture_missing_key(tmp_path):
    text = HEAD + '''
[[run.capture]]
at = "a"
name = "n"
addr = "1"
count_pages_not = "0"
''' + CHECK
    msg = spec_error(tmp_path, text)
    assert "capture #1" in msg and "length" in msg


def test_missing_title(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('title = "A small lab"', 'timeout = 5') + CHECK)
    assert "[lab]" in msg and "title" in msg


def test_missing_lab_table(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('[lab]\ntitle = "A small lab"\n', '') + CHECK)
    assert "[lab]" in msg and "title" in msg


@pytest.mark.parametrize("param", [
    "{ range = [16, 4], step = 4 }",
    "{ range = [4], step = 4 }",
    "{ range = [4, 8, 12] }",
    "{ range = ['a', 'b'] }",
    "{ step = 4 }",
    "{ range = [4, 16], step = 0 }",
    "{ range = [4, 16], step = -1 }",
    "{ values = [] }",
    "{ values = 3 }",
    "4",
])
def test_bad_param(tmp_path, param):
    msg = spec_error(tmp_path, HEAD.replace("{ range = [4, 16], step = 4 }", param) + CHECK)
    assert "[params.size]" in msg


def test_bad_param_name(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace("size = {", "Size = {").replace("{size}", "{twice}")
                     .replace('"size * 2"', '"2"') + CHECK)
    assert "[params.Size]" in msg


def test_derive_repeating_a_parameter(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('twice = "size * 2"', 'size = "3"') + CHECK)
    assert "[derive] size" in msg


def test_bad_derive_expression(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('"size * 2"', '"size *"') + CHECK)
    assert "[derive] twice" in msg and "syntax error" in msg


@pytest.mark.parametrize("timeout", ['"soon"', "0", "-5", "true"])
def test_bad_timeout(tmp_path, timeout):
    msg = spec_error(tmp_path, HEAD.replace('title = "A small lab"',
                                            f'title = "x"\ntimeout = {timeout}') + CHECK)
    assert "[lab]" in msg and "timeout" in msg


def test_unknown_run_in_a_check(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK.replace('run = "main"', 'run = "other"'))
    assert "check 'c1'" in msg and "run 'other' is not defined" in msg


def check(**over) -> str:
    """A [[check]] table; keyword values are TOML text, None drops the key."""
    fields = {"name": '"c1"', "title": '"a check"', "points": "1", "run": '"main"',
              "observed": '"cp.a.minflt"', "expect": "[0, 10]"}
    fields.update(over)
    return "\n[[check]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


@pytest.mark.parametrize("key, bad", [
    ("observed", '"cp.a.minflt +"'),
    ("observed", '"cp._data"'),
    ("expect", '["0", "10 +"]'),
    ("expect", '"value =="'),
    ("expect", '"lambda: 1"'),
    ("expect", "true"),
    ("report", '"fig.x("'),
    ("agree", '"1 +"'),
])
def test_bad_expression_in_check(tmp_path, key, bad):
    msg = spec_error(tmp_path, HEAD + check(**{key: bad}))
    assert f"check 'c1' {key}" in msg


def test_bad_expression_in_require(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK + 'require = [{ expr = "x.y()", why = "w" }]\n')
    assert "check 'c1' require" in msg and "only named functions" in msg
    msg = spec_error(tmp_path, HEAD + CHECK + 'require = ["1 +"]\n')
    assert "check 'c1' require" in msg
    msg = spec_error(tmp_path, HEAD + CHECK + 'require = [{ why = "w" }]\n')
    assert "check 'c1' require" in msg


def test_bad_expression_in_capture(tmp_path):
    text = HEAD + '''
[[run.capture]]
at = "a"
name = "n"
addr = "fig.buf +"
length = "2"
count_pages_not = "0"
''' + CHECK
    msg = spec_error(tmp_path, text)
    assert "capture #1" in msg and "syntax error" in msg


def test_missing_observed_or_expect(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK.replace('observed = "cp.a.minflt"\n', ''))
    assert "check 'c1' observed" in msg
    msg = spec_error(tmp_path, HEAD + CHECK.replace('expect = [0, 10]\n', ''))
    assert "check 'c1' expect" in msg


@pytest.mark.parametrize("where", ["args", "env"])
def test_placeholder_not_a_parameter(tmp_path, where):
    if where == "args":
        text = HEAD.replace('"{size}"', '"{sise}"')
    else:
        text = HEAD.replace('args = ["--size", "{size}"]', 'args = []\nenv = { X = "{sise}" }')
    msg = spec_error(tmp_path, text + CHECK)
    assert "[[run]] #1" in msg and "{sise}" in msg


def test_placeholder_may_be_a_derived_name(tmp_path):
    lab = load_text(tmp_path, HEAD.replace('"{size}"', '"{twice}"') + CHECK)
    assert lab.runs["main"].args == ["--size", "{twice}"]


def test_unknown_feature_in_run(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('name = "main"', 'name = "main"\nrequires = ["gpu"]') + CHECK)
    assert "[[run]] #1" in msg and "requires" in msg and "'gpu'" in msg


def test_unknown_feature_in_check(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK + 'requires = ["gpu"]\n')
    assert "check 'c1'" in msg and "requires" in msg and "'gpu'" in msg


def test_duplicate_check_names(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK + CHECK)
    assert "check 'c1'" in msg and "defined twice" in msg


def test_duplicate_run_names(tmp_path):
    msg = spec_error(tmp_path, HEAD + '\n[[run]]\nname = "main"\n' + CHECK)
    assert "[[run]] #2" in msg and "'main' is defined twice" in msg


@pytest.mark.parametrize("expect", ["[1]", "[1, 2, 3]", "[]"])
def test_expect_list_of_wrong_length(tmp_path, expect):
    msg = spec_error(tmp_path, HEAD + CHECK.replace("expect = [0, 10]", f"expect = {expect}"))
    assert "check 'c1'" in msg and "expect" in msg


@pytest.mark.parametrize("name", ['"C1"', '"1c"', '"a-b"', "3"])
def test_bad_check_name(tmp_path, name):
    msg = spec_error(tmp_path, HEAD + CHECK.replace('name = "c1"', f"name = {name}"))
    assert "[[check]] #1" in msg and "name" in msg


def test_bad_points(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK.replace("points = 1", "points = -1"))
    assert "check 'c1'" in msg and "points" in msg
    msg = spec_error(tmp_path, HEAD + CHECK.replace("points = 1", 'points = "one"'))
    assert "check 'c1'" in msg and "points" in msg


def test_check_needs_a_title(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK.replace('title = "a check"\n', ''))
    assert "check 'c1'" in msg and "title" in msg


def test_needs_a_run_and_a_check(tmp_path):
    msg = spec_error(tmp_path, '[lab]\ntitle = "x"\n' + CHECK)
    assert "[[run]]" in msg
    msg = spec_error(tmp_path, HEAD)
    assert "[[check]]" in msg


def test_run_or_check_written_as_a_table_not_an_array(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace("[[run]]", "[run]") + CHECK)
    assert "[[run]] table" in msg and "unknown key" not in msg
    msg = spec_error(tmp_path, HEAD + CHECK.replace("[[check]]", "[check]"))
    assert "[[check]] table" in msg and "unknown key" not in msg


def test_run_needs_a_name_and_string_args(tmp_path):
    msg = spec_error(tmp_path, HEAD.replace('name = "main"\n', '') + CHECK)
    assert "[[run]] #1" in msg and "name" in msg
    msg = spec_error(tmp_path, HEAD.replace('["--size", "{size}"]', '["--size", 4]') + CHECK)
    assert "[[run]] #1 args" in msg


def test_bad_lab_folder_name(tmp_path):
    msg = spec_error(tmp_path, HEAD + CHECK, name="Bad-Name")
    assert "Bad-Name" in msg


# ---- Param.draw ----------------------------------------------------------------

def draws(p: Param, n=400, seed=0):
    rng = random.Random(seed)
    return [p.draw(rng) for _ in range(n)]


def test_draw_is_deterministic_for_a_seed():
    for p in (Param("a", lo=32, hi=96, step=4), Param("b", values=[1, 2, 3, 4, 5]),
              Param("c", lo=0.1, hi=0.9, step=0.05), Param("d", lo=0, hi=1)):
        assert draws(p, seed=7) == draws(p, seed=7)
        assert len(set(draws(p, seed=7))) > 1
    assert draws(Param("a", lo=32, hi=96, step=4), seed=1) != draws(Param("a", lo=32, hi=96, step=4), seed=2)


def test_draw_integer_grid():
    got = draws(Param("a", lo=32, hi=96, step=4))
    assert all(type(x) is int for x in got)
    assert set(got) == set(range(32, 97, 4))       # every grid point, nothing else


@pytest.mark.parametrize("lo, hi, step", [(0, 11, 2), (0, 10, 3), (1, 2, 5), (5, 5, 1), (0, 7, 2)])
def test_draw_stays_within_range_when_hi_is_off_grid(lo, hi, step):
    got = set(draws(Param("a", lo=lo, hi=hi, step=step), n=600))
    assert got == set(range(lo, hi + 1, step))


def test_draw_float_grid_gives_clean_floats():
    got = draws(Param("f", lo=0.1, hi=0.9, step=0.05), n=1000)
    want = {round(0.1 + 0.05 * i, 2) for i in range(17)}
    assert set(got) == want
    assert all(type(x) is float for x in got)
    assert all(repr(x) == repr(round(x, 2)) for x in got)   # 0.35, not 0.35000000000000003
    assert 0.35 in got and 0.7 in got


def test_draw_float_step_integer_bounds():
    got = set(draws(Param("f", lo=1, hi=2, step=0.25)))
    assert got == {1.0, 1.25, 1.5, 1.75, 2.0}


def test_draw_values():
    got = draws(Param("v", values=[0x5a, 0xa5, "x"]))
    assert set(got) == {0x5a, 0xa5, "x"}


def test_draw_continuous_range():
    got = draws(Param("u", lo=1.5, hi=2.5))
    assert all(1.5 <= x <= 2.5 for x in got)


def test_lab_draw_uses_every_param(tmp_path):
    lab = load_text(tmp_path, HEAD.replace("[params]\n", "[params]\nfill = { values = [7] }\n") + CHECK)
    d = lab.draw(random.Random(3))
    assert set(d) == {"size", "fill"} and d["fill"] == 7 and d["size"] in (4, 8, 12, 16)


# ---- fill_placeholders_args -----------------------------------------------------

def test_fill_placeholders_args():
    vals = {"size": 32, "frac": 0.35, "whole": 4.0, "name": "x"}
    assert fill_placeholders_args(["--size", "{size}M", "{frac}", "{whole}", "{name}-{size}", "plain"],
                                  vals) == ["--size", "32M", "0.35", "4", "x-32", "plain"]
    assert fill_placeholders_args([], vals) == []
    # braces that are not placeholders stay
    assert fill_placeholders_args(["{Upper}", "{}", "{ size }"], vals) == ["{Upper}", "{}", "{ size }"]


# ---- discover and the real labs ------------------------------------------------

def test_discover_finds_only_folders_with_lab_toml(tmp_path):
    write(tmp_path, HEAD + CHECK, "beta")
    write(tmp_path, HEAD + CHECK, "alpha")
    (tmp_path / "notalab").mkdir()
    (tmp_path / "notalab" / "README.md").write_text("x")
    (tmp_path / "lab.toml").write_text("not a folder")
    (tmp_path / "file.txt").write_text("x")
    labs = discover(tmp_path)
    assert [lab.name for lab in labs] == ["alpha", "beta"]


REAL = sorted(d.name for d in (ROOT / "labs").iterdir() if (d / "lab.toml").is_file())


def test_there_are_real_labs():
    assert REAL


@pytest.mark.parametrize("name", REAL)
def test_real_lab_loads_and_every_expression_parses(name):
    lab = load(ROOT / "labs" / name)
    assert lab.name == name and lab.checks and lab.runs
    exprs = list(lab.derive.values())
    for run in lab.runs.values():
        for cap in run.captures:
            exprs += [x for x in (getattr(cap, k, "") for k in
                                  ("addr", "length", "count_pages_not", "cgroup", "pids")) if x]
    for c in lab.checks:
        assert c.run in lab.runs
        exprs += [c.observed, c.agree] + (c.expect if isinstance(c.expect, list) else [c.expect])
        exprs += [c.report] if c.report else []
        exprs += [r.expr for r in c.require]
    for e in exprs:
        parse(e)
    # every parameter draws inside its declared range
    rng = random.Random(1)
    for _ in range(50):
        for p in lab.params.values():
            v = p.draw(rng)
            if p.values is not None:
                assert v in p.values
            else:
                assert p.lo <= v <= p.hi
    assert spec.discover(ROOT / "labs")


def test_runs_whose_checks_follow_files_trace_every_file_call():
    """A check that names files (opened, reads, writes, proc_file, unmeasured) is only as
    good as the trace of its run: without close, a reused number is taken for its old
    file; without chdir, a relative name is lost. Each such run traces FILE_CALLS
    (creat aside: no lab writes a new file through it)."""
    import re as _re
    from grader.functions import FILE_CALLS
    uses = _re.compile(r"\b(opened|reads|writes|proc_file|unmeasured)\(")
    for lab in discover(ROOT / "labs"):
        for c in lab.checks:
            exprs = [c.observed, *(c.expect if isinstance(c.expect, list) else [c.expect]),
                     *(r.expr for r in c.require)]
            if any(uses.search(str(e)) for e in exprs):
                missing = set(FILE_CALLS) - {"creat"} - set(lab.runs[c.run].strace)
                assert not missing, f"{lab.name}/{c.name}: run '{c.run}' does not trace {sorted(missing)}"


def test_a_signal_capture_goes_to_the_sender_only(tmp_path):
    text = HEAD + '''
[[run.capture]]
at = "a"
name = "n"
signal = "'SIGTERM'"
pid = "cp.other.pid"
''' + CHECK
    msg = spec_error(tmp_path, text)
    assert "capture #1" in msg and "no pid" in msg


def test_signals_a_lab_draws_for_the_grader_to_send_keep_their_default_action():
    """The runner undoes an inherited ignore of runner.DEFAULT_SIGNALS only: a drawn
    signal outside them might be ignored by the lab, which then would not die of it."""
    from grader.runner import DEFAULT_SIGNALS
    for lab in discover(ROOT / "labs"):
        for run in lab.runs.values():
            for cap in run.captures:
                if cap.kind != "signal":
                    continue
                param = lab.params.get(cap.signal)
                assert param is not None and param.values, \
                    f"{lab.name}: capture {cap.name} must name a parameter with values"
                assert set(param.values) <= {*DEFAULT_SIGNALS, "none"}, (lab.name, param.values)
