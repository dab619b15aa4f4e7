"""Expressions in lab.toml: a small, safe subset of Python, evaluated by walking the AST.

Allowed: numbers, strings, True/False/None, names, attribute access on namespaces
(``cp.touched.minflt``), indexing, arithmetic, comparisons, ``and/or/not``,
``x if c else y``, lists/tuples, comprehensions and calls of the functions the
grader provides. Nothing else: no ``eval``, no attribute starting with ``_``,
no lambdas, no imports. Exponents and sequence sizes are bounded so a typo
cannot hang the grader.

A missing checkpoint or figure raises :class:`Missing`, whose message says what
the lab did not do ("the lab never reached checkpoint 'touched'"); a feature the
machine lacks raises :class:`Unavailable` (the check is skipped with a reason).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from typing import Any, Callable, Mapping


class ExprError(Exception):
    """The expression itself is wrong (a lab.toml bug), or misused a value."""


class Missing(Exception):
    """The data the expression needs was not produced by the lab."""


class Unavailable(Exception):
    """The data needs something this machine lacks: skip, with reason and fix."""

    def __init__(self, reason: str, fix: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class NS:
    """A read-only namespace: ``ns.key`` looks the key up, with a helpful Missing."""

    __slots__ = ("_data", "_what")

    def __init__(self, data: Mapping[str, Any], what: Callable[[str], str] | str = "value"):
        self._data = dict(data)
        self._what = what

    def get(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        if callable(self._what):
            raise Missing(self._what(key))
        raise Missing(f"no {self._what} '{key}'")

    def has(self, key: str) -> bool:
        return key in self._data

    def keys(self):
        return self._data.keys()

    def items(self):
        return self._data.items()

    def as_dict(self) -> dict:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"NS({self._data!r})"


MAX_SEQ = 1_000_000
MAX_INT_BITS = 4096

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
          ast.Invert: operator.invert}

BUILTINS: dict[str, Callable] = {
    "abs": abs, "min": min, "max": max, "len": len, "sum": sum, "all": all, "any": any,
    "int": int, "float": float, "str": str, "round": round, "sorted": sorted,
    "floor": math.floor, "ceil": math.ceil, "range": range, "set": set,
    "join": lambda sep, seq: str(sep).join(str(x) for x in seq),
    "basename": lambda path: str(path).rstrip("/").rsplit("/", 1)[-1],
    "startswith": lambda text, prefix: str(text).startswith(prefix),
}


def parse(text: str) -> ast.Expression:
    """Parse and validate; raises ExprError naming the first unsupported construct.
    (Cached: a lab's expressions are evaluated many times; the trees are only read.)"""
    if not isinstance(text, str):
        raise ExprError(f"expected an expression string, got {text!r}")
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"syntax error in {text!r}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise ExprError(f"syntax error in {text[:40]!r}...: nested too deeply") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExprError(f"{text!r}: names starting with '_' are not allowed")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ExprError(f"{text!r}: names starting with '_' are not allowed")
        allowed = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.Attribute,
                   ast.Subscript, ast.Slice, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                   ast.IfExp, ast.Call, ast.List, ast.Tuple, ast.ListComp, ast.GeneratorExp,
                   ast.comprehension, ast.And, ast.Or, ast.keyword,
                   *_BINOPS, *_CMPOPS, *_UNARY)
        if not isinstance(node, allowed):
            raise ExprError(f"{text!r}: {type(node).__name__} is not allowed in expressions")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise ExprError(f"{text!r}: only named functions can be called")
            if node.keywords:
                raise ExprError(f"{text!r}: keyword arguments are not supported")
    return tree


def names_used(tree: ast.Expression) -> set[str]:
    """Free names an expression reads (comprehension variables excluded)."""
    bound = {n.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
             for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - bound


class Evaluator:
    def __init__(self, names: Mapping[str, Any], functions: Mapping[str, Callable] | None = None):
        self.names = dict(names)
        self.functions = dict(BUILTINS)
        if functions:
            self.functions.update(functions)

    def eval(self, text: str | ast.Expression, extra: Mapping[str, Any] | None = None) -> Any:
        tree = parse(text) if isinstance(text, str) else text
        scope = dict(self.names)
        if extra:
            scope.update(extra)
        src = text if isinstance(text, str) else ast.unparse(tree)
        try:
            return self._ev(tree.body, scope)
        except (Missing, Unavailable, ExprError):
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError,
                AttributeError, RecursionError, MemoryError) as e:
            raise ExprError(f"{src!r}: {type(e).__name__}: {e}") from None

    # -- the walker
    def _ev(self, node: ast.AST, scope: dict) -> Any:
        ev = self._ev
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            raise ExprError(f"unknown name '{node.id}'")
        if isinstance(node, ast.Attribute):
            base = ev(node.value, scope)
            if isinstance(base, NS):
                return base.get(node.attr)
            raise ExprError(f"cannot take .{node.attr} of {type(base).__name__}")
        if isinstance(node, ast.Subscript):
            base = ev(node.value, scope)
            if isinstance(node.slice, ast.Slice):
                sl = node.slice
                idx = slice(*(ev(x, scope) if x is not None else None
                              for x in (sl.lower, sl.upper, sl.step)))
            else:
                idx = ev(node.slice, scope)
            if isinstance(base, NS):
                return base.get(idx)
            if isinstance(base, (list, tuple, str, bytes, dict)):
                return base[idx]
            raise ExprError(f"cannot index {type(base).__name__}")
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left, scope), ev(node.right, scope)
            if isinstance(node.op, ast.Pow) and (abs(b) > 64 if isinstance(b, (int, float)) else True):
                raise ExprError("exponent too large")
            if isinstance(node.op, ast.Mod) and isinstance(a, (str, bytes)):
                raise ExprError("'%' formatting of strings is not supported")
            if isinstance(node.op, ast.Mult):
                for seq, n in ((a, b), (b, a)):
                    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) \
                            and n * max(len(seq), 1) > MAX_SEQ:
                        raise ExprError("sequence too large")
            if isinstance(node.op, ast.LShift) and isinstance(b, int) and b > 256:
                raise ExprError("shift too large")
            r = _BINOPS[type(node.op)](a, b)
            if isinstance(r, int) and r.bit_length() > MAX_INT_BITS:
                raise ExprError("integer too large")
            return r
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](ev(node.operand, scope))
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                v = True
                for x in node.values:
                    v = ev(x, scope)
                    if not v:
                        return v
                return v
            v = False
            for x in node.values:
                v = ev(x, scope)
                if v:
                    return v
            return v
        if isinstance(node, ast.Compare):
            left = ev(node.left, scope)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node, scope)
                if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, NS):
                    ok = right.has(left) if isinstance(op, ast.In) else not right.has(left)
                else:
                    ok = _CMPOPS[type(op)](left, right)
                if not ok:
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body, scope) if ev(node.test, scope) else ev(node.orelse, scope)
        if isinstance(node, ast.List):
            return [ev(x, scope) for x in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(ev(x, scope) for x in node.elts)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return list(self._comprehend(node.elt, node.generators, scope, [0]))
        if isinstance(node, ast.Call):
            name = node.func.id  # validated in parse()
            fn = self.functions.get(name)
            if fn is None:
                raise ExprError(f"unknown function '{name}'")
            args = [ev(a, scope) for a in node.args]
            if name == "range" and len(args) and max(abs(int(a)) for a in args) > MAX_SEQ:
                raise ExprError("range too large")
            return fn(*args)
        raise ExprError(f"{type(node).__name__} is not allowed")

    def _comprehend(self, elt, generators, scope, count):
        # count: iterations so far over all the generators of this comprehension
        gen, rest = generators[0], generators[1:]
        seq = self._ev(gen.iter, scope)
        if isinstance(seq, NS):
            seq = list(seq.keys())
        for item in seq:
            count[0] += 1
            if count[0] > MAX_SEQ:
                raise ExprError("comprehension too long")
            inner = dict(scope)
            self._bind(gen.target, item, inner)
            if all(self._ev(cond, inner) for cond in gen.ifs):
                if rest:
                    yield from self._comprehend(elt, rest, inner, count)
                else:
                    yield self._ev(elt, inner)

    def _bind(self, target, value, scope):
        if isinstance(target, ast.Name):
            scope[target.id] = value
        elif isinstance(target, ast.Tuple):
            values = list(value)
            if len(values) != len(target.elts):
                raise ExprError("cannot unpack")
            for t, v in zip(target.elts, values):
                self._bind(t, v, scope)
        else:
            raise ExprError("unsupported comprehension target")
