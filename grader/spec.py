"""Load and validate labs/<lab>/lab.toml (grammar: docs/lab-format.md).

Every error names the file and the key, so a lab author sees at once what to fix.
All expressions are parsed here, at load time: a typo fails `make test`, not a
student's run.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from . import env as envmod
from .expr import ExprError, parse

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class SpecError(Exception):
    pass


@dataclass
class Param:
    name: str
    values: list | None = None          # pick one of these
    lo: float | None = None             # or a value in [lo, hi] on a grid of `step`
    hi: float | None = None
    step: float | None = None

    def draw(self, rng: random.Random):
        if self.values is not None:
            return rng.choice(self.values)
        assert self.lo is not None and self.hi is not None
        if self.step:
            # grid points lo, lo + step, ... that are <= hi (the epsilon absorbs float error)
            n = int(math.floor((self.hi - self.lo) / self.step + 1e-9))
            v = self.lo + self.step * rng.randint(0, n)
            is_int = all(float(x).is_integer() for x in (self.lo, self.step))
            return int(v) if is_int else round(v, 10)
        return rng.uniform(self.lo, self.hi)


@dataclass
class Capture:
    """An observation the grader makes at a checkpoint, beyond /proc/<pid>/*.

    Exactly one kind: count_pages_not (with addr and length): pages of the
    sender's memory that are not entirely that byte; cgroup: the memory
    counters of a lab's cgroup (an expression giving its path); pids: the
    state of each of a list of processes ("gone", "Z", "S", ...); signal: a signal
    the grader sends the sender, ending it (labs/oom)."""
    at: str                 # checkpoint name
    name: str
    addr: str = ""          # expressions
    length: str = ""
    count_pages_not: str = ""
    cgroup: str = ""
    pids: str = ""
    numa: str = ""          # an address: where the pages of its mapping are, per node
    count_pages_foreign: str = ""   # a list of byte values: pages holding any other byte
    poke_pages: str = ""    # how many whole pages of [addr, addr+length) the grader overwrites
    poke_byte: str = ""     # with this byte (poke_pages)
    pid: str = ""           # whose memory (default: the checkpoint's sender)
    signal: str = ""        # a signal name ("SIGTERM", or "none"): the grader sends it to the sender

    @property
    def kind(self) -> str:
        return ("pages" if self.count_pages_not else "foreign" if self.count_pages_foreign else
                "poke" if self.poke_pages else "signal" if self.signal else
                "cgroup" if self.cgroup else "numa" if self.numa else "pids")


@dataclass
class Run:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    strace: list[str] = field(default_factory=list)
    norandom: bool = False
    requires: list[str] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    show: bool = False


@dataclass
class Requirement:
    expr: str
    why: str


@dataclass
class Check:
    name: str
    title: str
    points: float
    run: str
    observed: str
    expect: list[str] | str          # [lo, hi] expressions, or a boolean expression of `value`
    report: str | None = None
    agree: str = "0"
    require: list[Requirement] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    hint: str = ""
    hidden: bool = False
    expected_text: str = ""
    unit: str = ""


@dataclass
class Lab:
    name: str
    dir: Path
    title: str
    timeout: float
    ldlibs: str
    params: dict[str, Param]
    derive: dict[str, str]
    runs: dict[str, Run]
    checks: list[Check]

    @property
    def source(self) -> Path:
        return self.dir / f"{self.name}.c"

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)

    def draw(self, rng: random.Random) -> dict:
        return {name: p.draw(rng) for name, p in self.params.items()}


def _want(cond: bool, where: str, msg: str):
    if not cond:
        raise SpecError(f"{where}: {msg}")


def _expr(text: Any, where: str) -> str:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    _want(isinstance(text, str), where, f"expected an expression (string or number), got {text!r}")
    try:
        parse(text)
    except ExprError as e:
        raise SpecError(f"{where}: {e}") from None
    return text


def _strlist(v: Any, where: str) -> list[str]:
    _want(isinstance(v, list) and all(isinstance(x, str) for x in v), where,
          "expected a list of strings")
    return list(v)


def _trace_list(names: list[str], where: str) -> list[str]:
    """A run's strace list with its groups (functions.TRACE_GROUPS: "@files", ...)
    expanded, each call once, in the order first named."""
    from .functions import TRACE_GROUPS
    out: list[str] = []
    for n in names:
        _want(not n.startswith("@") or n in TRACE_GROUPS, where,
              f"unknown group '{n}'; groups: {', '.join(TRACE_GROUPS)}")
        out += [c for c in TRACE_GROUPS.get(n, [n]) if c not in out]
    return out


def _keys(table: dict, allowed: set, where: str):
    extra = set(table) - allowed
    _want(not extra, where, f"unknown key(s) {', '.join(sorted(extra))}; allowed: "
          f"{', '.join(sorted(allowed))}")


def load(lab_dir: Path) -> Lab:
    lab_dir = Path(lab_dir)
    path = lab_dir / "lab.toml"
    name = lab_dir.name
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise SpecError(f"{where}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML: {e}") from None
    _want(NAME_RE.match(name) is not None, where, f"lab folder name '{name}' must match {NAME_RE.pattern}")
    _keys(data, {"lab", "params", "derive", "run", "check"}, where)

    meta = data.get("lab", {})
    _keys(meta, {"title", "timeout", "ldlibs"}, f"{where} [lab]")
    _want(isinstance(meta.get("title"), str), f"{where} [lab]", "needs a title")
    timeout = meta.get("timeout", 30)
    _want(isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0,
          f"{where} [lab] timeout", "must be a number of seconds > 0")

    params = {}
    for pname, p in data.get("params", {}).items():
        pw = f"{where} [params.{pname}]"
        _want(NAME_RE.match(pname) is not None, pw, "bad parameter name")
        _want(isinstance(p, dict), pw, "expected a table like { range = [lo, hi], step = n } or { values = [...] }")
        _keys(p, {"values", "range", "step"}, pw)
        if "values" in p:
            _want(isinstance(p["values"], list) and p["values"], pw, "values must be a non-empty list")
            params[pname] = Param(pname, values=list(p["values"]))
        else:
            r = p.get("range")
            _want(isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) for x in r)
                  and r[0] <= r[1], pw, "range must be [lo, hi] with lo <= hi")
            step = p.get("step")
            _want(step is None or (isinstance(step, (int, float)) and step > 0), pw, "step must be > 0")
            params[pname] = Param(pname, lo=r[0], hi=r[1], step=step)

    derive = {}
    for dname, text in data.get("derive", {}).items():
        dw = f"{where} [derive] {dname}"
        _want(NAME_RE.match(dname) is not None and dname not in params, dw,
              "bad name, or it repeats a parameter")
        derive[dname] = _expr(text, dw)

    runs: dict[str, Run] = {}
    _want(isinstance(data.get("run", []), list), where, "write each run as a [[run]] table")
    for i, r in enumerate(data.get("run", [])):
        rw = f"{where} [[run]] #{i + 1}"
        _keys(r, {"name", "args", "env", "strace", "norandom", "requires", "capture", "show"}, rw)
        rname = r.get("name")
        _want(isinstance(rname, str) and NAME_RE.match(rname) is not None, rw, "needs a name")
        _want(rname not in runs, rw, f"run '{rname}' is defined twice")
        args = _strlist(r.get("args", []), f"{rw} args")
        env = r.get("env", {})
        _want(isinstance(env, dict) and all(isinstance(v, str) for v in env.values()), f"{rw} env",
              "expected a table of strings")
        for text in args + list(env.values()):
            for ph in PLACEHOLDER_RE.findall(text):
                _want(ph in params or ph in derive, rw, f"'{{{ph}}}' is not a parameter or derived name")
        requires = _strlist(r.get("requires", []), f"{rw} requires")
        for feat in requires:
            _want(feat in envmod.KNOWN_FEATURES, f"{rw} requires", f"unknown feature '{feat}'; known: "
                  f"{', '.join(envmod.KNOWN_FEATURES)}")
        captures = []
        for j, c in enumerate(r.get("capture", [])):
            cw = f"{rw} capture #{j + 1}"
            _keys(c, {"at", "name", "addr", "length", "count_pages_not", "count_pages_foreign",
                      "cgroup", "pids", "numa", "poke_pages", "poke_byte", "pid", "signal"}, cw)
            for k in ("at", "name"):
                _want(isinstance(c.get(k), str), cw, f"needs '{k}'")
            kinds = [k for k in ("count_pages_not", "count_pages_foreign", "poke_pages", "cgroup",
                                 "pids", "numa", "signal") if k in c]
            _want(len(kinds) == 1, cw, "needs exactly one of count_pages_not, count_pages_foreign "
                  "or poke_pages (with addr and length), cgroup, pids, numa, signal")
            _want(not ("pid" in c and kinds[0] == "signal"), cw,
                  "signal goes to the checkpoint's sender only: no pid")
            if kinds[0].startswith(("count_pages", "poke")):
                _want("addr" in c and "length" in c, cw, f"{kinds[0]} needs addr and length")
            _want(("poke_byte" in c) == (kinds[0] == "poke_pages"), cw,
                  "poke_pages needs poke_byte, and only it")
            captures.append(Capture(c["at"], c["name"],
                                    **{k: _expr(c[k], cw) for k in
                                       ("addr", "length", "count_pages_not", "cgroup", "pids",
                                        "numa", "count_pages_foreign", "poke_pages", "poke_byte",
                                        "pid", "signal")
                                       if k in c}))
        # traced when strace works here; checks that read `trace` require "strace"
        strace = _trace_list(_strlist(r.get("strace", []), f"{rw} strace"), f"{rw} strace")
        norandom = bool(r.get("norandom", False))
        if norandom and "setarch" not in requires:
            requires.append("setarch")
        runs[rname] = Run(rname, args, dict(env), strace, norandom, requires, captures,
                          bool(r.get("show", False)))
    _want(runs, where, "needs at least one [[run]]")
    if not any(r.show for r in runs.values()):
        next(iter(runs.values())).show = True

    checks: list[Check] = []
    seen = set()
    _want(isinstance(data.get("check", []), list), where, "write each check as a [[check]] table")
    for i, c in enumerate(data.get("check", [])):
        cw = f"{where} [[check]] #{i + 1}"
        _keys(c, {"name", "title", "points", "run", "observed", "expect", "report", "agree",
                  "require", "requires", "hint", "hidden", "expected_text", "unit"}, cw)
        cname = c.get("name")
        _want(isinstance(cname, str) and NAME_RE.match(cname) is not None, cw,
              f"needs a name matching {NAME_RE.pattern}")
        cw = f"{where} check '{cname}'"
        _want(cname not in seen, cw, "defined twice")
        seen.add(cname)
        _want(isinstance(c.get("title"), str), cw, "needs a title")
        pts = c.get("points")
        _want(isinstance(pts, (int, float)) and pts >= 0, cw, "points must be a number >= 0")
        _want(c.get("run") in runs, cw, f"run '{c.get('run')}' is not defined")
        observed = _expr(c.get("observed"), f"{cw} observed")
        expect = c.get("expect")
        if isinstance(expect, list):
            _want(len(expect) == 2, cw, "expect = [lo, hi]")
            expect = [_expr(x, f"{cw} expect") for x in expect]
        else:
            expect = _expr(expect, f"{cw} expect")
        report = _expr(c["report"], f"{cw} report") if "report" in c else None
        agree = _expr(c.get("agree", 0), f"{cw} agree")
        reqs = []
        for r in c.get("require", []):
            if isinstance(r, str):
                reqs.append(Requirement(_expr(r, f"{cw} require"), ""))
            else:
                _want(isinstance(r, dict) and "expr" in r, f"{cw} require",
                      "each entry is an expression or { expr = ..., why = ... }")
                reqs.append(Requirement(_expr(r["expr"], f"{cw} require"), str(r.get("why", ""))))
        requires = _strlist(c.get("requires", []), f"{cw} requires")
        for feat in requires:
            _want(feat in envmod.KNOWN_FEATURES, f"{cw} requires", f"unknown feature '{feat}'; known: "
                  f"{', '.join(envmod.KNOWN_FEATURES)}")
        checks.append(Check(cname, c["title"], float(pts), c["run"], observed, expect, report, agree,
                            reqs, requires, str(c.get("hint", "")), bool(c.get("hidden", False)),
                            str(c.get("expected_text", "")), str(c.get("unit", ""))))
    _want(checks, where, "needs at least one [[check]]")

    return Lab(name=name, dir=lab_dir, title=meta["title"], timeout=float(timeout),
               ldlibs=str(meta.get("ldlibs", "")), params=params, derive=derive, runs=runs,
               checks=checks)


def lab_names(labs_dir: Path) -> list[str]:
    """The folders of labs_dir that hold a lab.toml: the labs, in name order."""
    return sorted(d.name for d in Path(labs_dir).iterdir() if (d / "lab.toml").is_file())


def discover(labs_dir: Path) -> list[Lab]:
    """Every lab of labs_dir, loaded, in name order."""
    return [load(Path(labs_dir) / name) for name in lab_names(labs_dir)]


def fill_placeholders_args(args: list[str], values: dict) -> list[str]:
    """Replace {name} in run arguments by the drawn or derived value."""
    def one(m):
        v = values[m.group(1)]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return str(v)
    return [PLACEHOLDER_RE.sub(one, a) for a in args]
