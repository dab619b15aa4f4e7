"""grader/expr.py: the safe evaluator of lab.toml expressions."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader.expr import NS, Evaluator, ExprError, Missing, names_used, parse  # noqa: E402


def ev(text, **names):
    return Evaluator(names).eval(text)


# ---- what is allowed -----------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 // 2", 3),
    ("7 / 2", 3.5),
    ("7 % 3", 1),
    ("-7 // 2", -4),
    ("2 ** 10", 1024),
    ("2 ** -1", 0.5),
    ("0x10 | 1", 17),
    ("6 & 3", 2),
    ("6 ^ 3", 5),
    ("1 << 12", 4096),
    ("4096 >> 3", 512),
    ("~0", -1),
    ("-(3)", -3),
    ("+3", 3),
    ("not 0", True),
    ("1.5 * 2", 3.0),
    ("'ab' + 'cd'", "abcd"),
    ("'ab' * 3", "ababab"),
    ("[1, 2] + [3]", [1, 2, 3]),
    ("(1, 2)", (1, 2)),
    ("None", None),
    ("True and False", False),
])
def test_arithmetic_and_literals(text, want):
    got = ev(text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("text, want", [
    ("1 < 2", True),
    ("2 <= 2", True),
    ("3 > 4", False),
    ("3 >= 4", False),
    ("1 == 1.0", True),
    ("1 != 2", True),
    ("None is None", True),
    ("1 is not None", True),
    ("2 in [1, 2]", True),
    ("'x' not in 'abc'", True),
    ("1 < 2 < 3", True),
    ("1 < 3 < 2", False),
    ("3 > 2 > 1 >= 1", True),
    ("1 < 2 > 5", False),
    ("0 <= 5 <= 10 != 11", True),
])
def test_comparisons_and_chains(text, want):
    assert ev(text) is want


def test_chained_comparison_evaluates_the_middle_once_and_stops_at_the_first_false():
    calls = []

    def f(x):
        calls.append(x)
        return x
    e = Evaluator({}, {"f": f})
    assert e.eval("f(1) < f(2) < f(3)") is True
    assert calls == [1, 2, 3]
    calls.clear()
    assert e.eval("f(2) < f(1) < f(3)") is False
    assert calls == [2, 1]          # f(3) never evaluated


def test_and_or_short_circuit_and_return_operands():
    calls = []

    def boom():
        calls.append("boom")
        raise AssertionError("must not be evaluated")
    e = Evaluator({}, {"boom": boom})
    assert e.eval("0 and boom()") == 0
    assert e.eval("1 or boom()") == 1
    assert e.eval("'' or 0 or 'x'") == "x"
    assert e.eval("1 and 2 and 3") == 3
    assert e.eval("1 and [] and boom()") == []
    assert e.eval("None or 0") == 0
    assert calls == []
    # a Missing name on the untaken branch does not matter either
    assert ev("has or fig.nothing", has=True, fig=NS({})) is True


def test_if_expression_evaluates_only_the_chosen_branch():
    e = Evaluator({"x": 5}, {"boom": lambda: 1 / 0})
    assert e.eval("'big' if x > 3 else boom()") == "big"
    assert e.eval("boom() if x > 9 else 'small'") == "small"
    assert e.eval("1 if x < 0 else 2 if x < 9 else 3") == 2


def test_comprehensions():
    assert ev("[x * x for x in range(5)]") == [0, 1, 4, 9, 16]
    assert ev("[x for x in range(10) if x % 2 if x > 3]") == [5, 7, 9]
    assert ev("[(i, j) for i in range(3) for j in range(i)]") == [(1, 0), (2, 0), (2, 1)]
    assert ev("[i + j for i in [10, 20] if i > 10 for j in [1, 2] if j != 1]") == [22]
    assert ev("[a * b for a, b in pairs]", pairs=[(1, 2), (3, 4)]) == [2, 12]
    assert ev("[a + c for (a, (b, c)) in xs]", xs=[(1, (2, 3))]) == [4]
    assert ev("sum(x for x in range(4))") == 6
    assert ev("all(x > 0 for x in [1, 2])") is True
    assert ev("any(x > 5 for x in [1, 2])") is False
    # inner comprehensions see outer variables; they don't leak out
    assert ev("[[i * j for j in range(3)] for i in range(2)]") == [[0, 0, 0], [0, 1, 2]]
    assert ev("[x for x in range(2)] + [x]", x=9) == [0, 1, 9]


def test_comprehension_over_a_namespace_iterates_its_keys():
    fig = NS({"a": 1, "b": 2})
    assert ev("[k for k in fig]", fig=fig) == ["a", "b"]
    assert ev("[fig[k] for k in fig]", fig=fig) == [1, 2]


def test_comprehension_unpack_mismatch_is_an_error():
    with pytest.raises(ExprError):
        ev("[a for a, b in [(1, 2, 3)]]")


def test_indexing_and_slicing():
    xs = [10, 20, 30, 40]
    assert ev("xs[0]", xs=xs) == 10
    assert ev("xs[-1]", xs=xs) == 40
    assert ev("xs[1:3]", xs=xs) == [20, 30]
    assert ev("xs[::-1]", xs=xs) == [40, 30, 20, 10]
    assert ev("xs[:2]", xs=xs) == [10, 20]
    assert ev("xs[::2]", xs=xs) == [10, 30]
    assert ev("'hello'[1:4]") == "ell"
    assert ev("(1, 2, 3)[1]") == 2
    assert ev("d['k']", d={"k": 5}) == 5
    with pytest.raises(ExprError, match="cannot index"):
        ev("n[0]", n=5)
    with pytest.raises(ExprError, match="cannot index"):
        ev("range(5)[0]")


def test_namespace_attribute_subscript_and_in():
    cp = NS({"start": NS({"minflt": 7}), "obj.x": 3})
    assert ev("cp.start.minflt", cp=cp) == 7
    assert ev("cp['obj.x']", cp=cp) == 3
    assert ev("'start' in cp", cp=cp) is True
    assert ev("'nope' in cp", cp=cp) is False
    assert ev("'nope' not in cp", cp=cp) is True
    assert ev("'start' not in cp", cp=cp) is False
    with pytest.raises(ExprError, match="cannot take"):
        ev("x.real", x=5)


def test_missing_namespace_key_raises_missing_with_the_namespace_message():
    fig = NS({}, lambda k: f"the lab did not report figure '{k}'")
    with pytest.raises(Missing) as e:
        ev("fig.total + 1", fig=fig)
    assert str(e.value) == "the lab did not report figure 'total'"
    with pytest.raises(Missing) as e:
        ev("fig['a.b']", fig=fig)
    assert str(e.value) == "the lab did not report figure 'a.b'"
    plain = NS({}, "environment fact")
    with pytest.raises(Missing) as e:
        ev("env.page_size", env=plain)
    assert str(e.value) == "no environment fact 'page_size'"
    # Missing is not turned into an ExprError
    assert not issubclass(Missing, ExprError)


def test_builtins():
    assert ev("abs(-3)") == 3
    assert ev("min(3, 1, 2)") == 1
    assert ev("max([3, 1, 2])") == 3
    assert ev("len('abc')") == 3
    assert ev("sum([1, 2, 3])") == 6
    assert ev("int('42')") == 42
    assert ev("int(3.9)") == 3
    assert ev("float('1.5')") == 1.5
    assert ev("str(12)") == "12"
    assert ev("round(2.567, 2)") == 2.57
    assert ev("sorted([3, 1, 2])") == [1, 2, 3]
    assert ev("floor(2.7)") == 2 and ev("ceil(2.1)") == 3
    assert ev("list_len", list_len=1) == 1
    assert ev("len(range(3, 10, 2))") == 4
    assert ev("set([1, 1, 2]) == set([2, 1])") is True
    assert ev("join(', ', [1, 'a', 2.5])") == "1, a, 2.5"
    assert ev("join('-', [])") == ""


def test_functions_given_to_the_evaluator_are_callable():
    e = Evaluator({"x": 2}, {"double": lambda v: v * 2})
    assert e.eval("double(x) + 1") == 5


def test_extra_names_shadow_and_do_not_persist():
    e = Evaluator({"value": 1})
    assert e.eval("value", {"value": 2}) == 2
    assert e.eval("value") == 1


def test_evaluating_a_parsed_tree():
    e = Evaluator({"a": 3})
    assert e.eval(parse("a * 2")) == 6


def test_names_used_excludes_comprehension_variables():
    assert names_used(parse("[x + y for x in xs if z]")) == {"y", "xs", "z"}
    assert names_used(parse("has_cp('a') and cp.b.c > n")) == {"has_cp", "cp", "n"}


# ---- rejected at parse time ----------------------------------------------------

@pytest.mark.parametrize("text, why", [
    ("lambda: 1", "Lambda"),
    ("(lambda x: x)(1)", "Lambda|only named functions"),
    ("cp._data", "'_'"),
    ("cp.__class__", "'_'"),
    ("_secret", "'_'"),
    ("__import__('os')", "'_'"),
    ("[_x for _x in range(3)]", "'_'"),
    ("x.y()", "only named functions"),
    ("cp.keys()", "only named functions"),
    ("f()()", "only named functions"),
    ("xs[0](1)", "only named functions"),
    ("sorted(xs, key=len)", "keyword"),
    ("f(**d)", "keyword"),
    ("import os", "syntax error"),
    ("x = 1", "syntax error"),
    ("del x", "syntax error"),
    ("1; 2", "syntax error"),
    ("(y := 3)", "NamedExpr"),
    ("f'{x}'", "JoinedStr"),
    ("{'a': 1}", "Dict"),
    ("{1, 2}", "Set"),
    ("{k: 1 for k in xs}", "DictComp"),
    ("{k for k in xs}", "SetComp"),
    ("[*xs]", "Starred"),
    ("f(*xs)", "Starred"),
    ("await x", "Await|syntax error"),
    ("(yield)", "syntax error|Yield"),
    ("", "syntax error"),
])
def test_rejected_at_parse_time(text, why):
    with pytest.raises(ExprError, match=why):
        parse(text)
    # and the evaluator refuses before running anything
    called = []
    e = Evaluator({"xs": [1], "cp": NS({}), "x": 1, "d": {}},
                  {"f": lambda *a: called.append(a), "sorted": sorted})
    with pytest.raises(ExprError):
        e.eval(text)
    assert called == []


def test_parse_rejects_non_strings():
    with pytest.raises(ExprError):
        parse(42)  # type: ignore[arg-type]


def test_parse_error_names_the_text():
    with pytest.raises(ExprError, match=r"'1 \+'"):
        parse("1 +")


def test_deep_nesting_is_an_expr_error_not_a_crash():
    with pytest.raises(ExprError):
        parse("-" * 20000 + "1")
    with pytest.raises(ExprError):
        parse("(" * 1000 + "1" + ")" * 1000)


# ---- bounded resources ---------------------------------------------------------

@pytest.mark.parametrize("text", [
    "2 ** 10000",
    "10 ** 65",
    "2 ** 64 ** 2",
    "'a' * 10 ** 9",
    "10 ** 9 * 'a'",
    "[0] * 10 ** 9",
    "(1, 2) * 10 ** 8",
    "b'a' * 10 ** 9",
    "range(10 ** 9)",
    "range(0, 10 ** 9)",
    "len(range(-10 ** 9, 0))",
    "1 << 100000",
    "(2 ** 64) ** 64 * 2 ** 64",
    "'%0999999999d' % 1",
])
def test_resource_bombs_raise_expr_error_quickly(text):
    t0 = time.monotonic()
    with pytest.raises(ExprError):
        ev(text)
    assert time.monotonic() - t0 < 1.0


def test_comprehensions_are_bounded_in_total_not_per_loop(monkeypatch):
    from grader import expr
    monkeypatch.setattr(expr, "MAX_SEQ", 1000)
    xs = list(range(500))
    assert len(ev("[1 for x in xs]", xs=xs)) == 500
    with pytest.raises(ExprError, match="comprehension too long"):
        ev("[1 for x in xs for y in xs]", xs=xs)
    with pytest.raises(ExprError, match="comprehension too long"):
        ev("sum(1 for x in xs for y in xs)", xs=xs)


def test_big_but_bounded_values_are_fine():
    assert ev("2 ** 64") == 1 << 64
    assert ev("1 << 256") == 2 ** 256
    assert len(ev("'a' * 1000")) == 1000
    assert ev("len(range(1000))") == 1000


# ---- errors --------------------------------------------------------------------

def test_unknown_names_and_functions():
    with pytest.raises(ExprError, match="unknown name 'nope'"):
        ev("nope + 1")
    with pytest.raises(ExprError, match="unknown function 'nope'"):
        ev("nope(1)")
    with pytest.raises(ExprError, match="unknown function 'eval'"):
        ev("eval('1')")
    with pytest.raises(ExprError, match="unknown function 'open'"):
        ev("open('/etc/passwd')")


@pytest.mark.parametrize("text, kind", [
    ("1 / 0", "ZeroDivisionError"),
    ("5 // 0", "ZeroDivisionError"),
    ("[][1]", "IndexError"),
    ("(1, 2)[5]", "IndexError"),
    ("d['nokey']", "KeyError"),
    ("1 + 'a'", "TypeError"),
    ("1 < 'a'", "TypeError"),
    ("int('x')", "ValueError"),
    ("len(5)", "TypeError"),
    ("1 << -1", "ValueError"),
    ("max([])", "ValueError"),
])
def test_errors_during_evaluation_are_expr_errors_with_the_source(text, kind):
    with pytest.raises(ExprError) as e:
        ev(text, d={})
    msg = str(e.value)
    assert repr(text) in msg
    assert kind in msg


def test_error_from_a_parsed_tree_names_its_source():
    with pytest.raises(ExprError, match=r"1 / 0"):
        Evaluator({}).eval(parse("1 / 0"))
