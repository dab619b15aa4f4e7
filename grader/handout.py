"""Write the student version of the course tree: `make handout`.

    make_handout(root, out)   copy the tree, strip solutions and hidden checks, verify
    strip_solutions(text, filename)     a C source with every solution region replaced by its stub
    strip_hidden_checks(toml_text)      a lab.toml without its `hidden = true` checks
    verify_handout(root, out)           prove that `out` holds no solution and no hidden check

Solution regions are described in docs/lab-format.md ("Solution regions"). The
handout is written next to `out` first and only replaces `out` once it has been
verified, so a failed run never leaves a leaking handout behind.

This file is part of the handout itself, so it never spells a marker out in one
piece: the markers are assembled from their words below.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .spec import SpecError, load


class HandoutError(Exception):
    pass


# ---- what is copied ----------------------------------------------------------

# Top-level entries of the handout; anything else at the top (.git, build/, dist/,
# tests/ with its reference solutions and cheats, bench/, .ci/, ...) stays home.
INCLUDE = ("Makefile", "README.md", ".editorconfig", ".gitignore", "Dockerfile", ".dockerignore",
           "deps", "common", "grader", "labs", "docs")
# Names never copied, at any depth.
EXCLUDE_NAMES = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDE_SUFFIXES = (".pyc", ".pyo")
# Directories in which the handout may not be written (it would copy itself).
PROTECTED = ("labs", "common", "grader", "deps", "docs")
HANDOUT_README = Path("docs") / "handout-README.md"
# What was handed out: sha256 of every labs/<lab>/<lab>.c as distributed, so that
# `make submit` (grader/submit.py) packs only the files the student changed.
MANIFEST = Path(".memlab") / "handout.json"
# Instructors' guides that have no place in the student's copy.
INSTRUCTOR_ONLY = (Path("docs") / "gradescope.md",)

# ---- the markers ------------------------------------------------------------

_SOL = r"SOLUTION"
_BEGIN_RE = re.compile(r"^/\*\s*BEGIN\s+" + _SOL + r"\s*\*/$")
_STUB_RE = re.compile(r"^/\*\s*" + "STUB" + r"$")
_END_STUB_RE = re.compile(r"^END\s+" + _SOL + r"\s*\*/$")        # closes a region with a stub
_END_BARE_RE = re.compile(r"^/\*\s*END\s+" + _SOL + r"\s*\*/$")  # closes a region without one
# Anything that looks like a marker, wherever it is (for errors and for the final check).
_ANY_MARKER_RE = re.compile(r"(?:BEGIN|END)\s+" + _SOL + r"|/\*\s*" + "STUB")
_ANY_MARKER_BYTES_RE = re.compile(_ANY_MARKER_RE.pattern.encode())

BEGIN_MARKER = "/* BEGIN " + _SOL + " */"
STUB_MARKER = "/* " + "STUB"
END_MARKER = "END " + _SOL + " */"
END_BARE_MARKER = "/* END " + _SOL + " */"

# A solution line shorter than this (stripped) is too common to prove a leak.
MEANINGFUL_LEN = 12
_BRACES_ONLY = set("{}()[];, \t")


class _Region:
    def __init__(self, begin: int):
        self.begin = begin                      # 1-based line of the BEGIN marker
        self.solution: list[tuple[int, str]] = []
        self.stub: list[tuple[int, str]] = []


def _parse(text: str, filename: str) -> tuple[str, list[_Region]]:
    """(text with every region replaced by its stub, the regions)."""
    out: list[str] = []
    regions: list[_Region] = []
    state = "out"                               # out | solution | stub
    region: _Region | None = None

    def fail(lineno: int, msg: str):
        raise HandoutError(f"{filename}:{lineno}: {msg}")

    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        s = line.strip()
        if _BEGIN_RE.match(s):
            if state != "out":
                fail(lineno, f"'{BEGIN_MARKER}' inside the region opened at line {region.begin} "
                     "(regions do not nest)")
            region = _Region(lineno)
            regions.append(region)
            state = "solution"
        elif _STUB_RE.match(s):
            if state == "out":
                fail(lineno, f"'{STUB_MARKER}' outside a solution region (no '{BEGIN_MARKER}' before it)")
            if state == "stub":
                fail(lineno, f"a second '{STUB_MARKER}' in the region opened at line {region.begin}")
            state = "stub"
        elif _END_STUB_RE.match(s):
            if state == "out":
                fail(lineno, f"'{END_MARKER}' without '{BEGIN_MARKER}'")
            if state == "solution":
                fail(lineno, f"'{END_MARKER}' closes a '{STUB_MARKER}' comment, but the region opened "
                     f"at line {region.begin} has none (without a stub, end it with '{END_BARE_MARKER}')")
            state, region = "out", None
        elif _END_BARE_RE.match(s):
            if state == "out":
                fail(lineno, f"'{END_BARE_MARKER}' without '{BEGIN_MARKER}'")
            if state == "stub":
                fail(lineno, f"inside the '{STUB_MARKER}' of the region opened at line {region.begin}, "
                     f"the region ends with '{END_MARKER}'")
            state, region = "out", None
        elif _ANY_MARKER_RE.search(line):
            fail(lineno, f"a solution marker must stand alone on its line: {s!r}")
        elif state == "out":
            out.append(line)
        elif state == "solution":
            region.solution.append((lineno, line))
        else:
            if "*/" in line:
                fail(lineno, "a stub line cannot contain '*/' (it would end the comment early; "
                     "use // comments)")
            region.stub.append((lineno, line))
            out.append(line)
    if state != "out":
        fail(region.begin, f"the solution region opened here is never closed (expected "
             f"'{END_MARKER if state == 'stub' else END_BARE_MARKER}')")
    return "".join(out), regions


def strip_solutions(text: str, filename: str) -> str:
    """Replace every solution region of a C source by its stub lines (or by nothing)."""
    return _parse(text, filename)[0]


# ---- lab.toml ----------------------------------------------------------------

_CHECK_HEADER_RE = re.compile(r"^\[\[\s*check\s*\]\]\s*(#.*)?$")


def _is_comment_or_blank(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def strip_hidden_checks(toml_text: str) -> str:
    """lab.toml without its [[check]] tables that have `hidden = true`, text otherwise kept.

    A [[check]] table runs from its header to the line before the next line that
    starts with '[' at column 0. Comment lines right above the next header (no blank
    line in between) describe that table and are kept.
    """
    lines = toml_text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.startswith("[")]
    drop: set[int] = set()
    for k, i in enumerate(starts):
        if not _CHECK_HEADER_RE.match(lines[i].rstrip("\r\n")):
            continue
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        block = "".join(lines[i:end])
        try:
            tables = tomllib.loads(block).get("check", [])
        except tomllib.TOMLDecodeError as e:
            raise HandoutError(f"[[check]] at line {i + 1}: not valid TOML on its own: {e}") from None
        if not (len(tables) == 1 and tables[0].get("hidden") is True):
            continue
        keep_from = end
        if end < len(lines):                    # comments attached to the next header
            while keep_from > i + 1 and lines[keep_from - 1].strip().startswith("#"):
                keep_from -= 1
        drop.update(range(i, keep_from))
    if not drop:
        return toml_text
    kept = [ln for n, ln in enumerate(lines) if n not in drop]
    if max(drop) == len(lines) - 1:             # removed up to the end: no trailing blank lines
        while kept and not kept[-1].strip():
            kept.pop()
        if kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"
    result = "".join(kept)

    # The text rule must have removed exactly the hidden tables, and nothing else.
    try:
        before = tomllib.loads(toml_text)
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError as e:
        raise HandoutError(f"lab.toml is not valid TOML after removing hidden checks: {e}") from None
    want = dict(before, check=[c for c in before.get("check", []) if c.get("hidden") is not True])
    got = dict(after, check=after.get("check", []))
    if want != got:
        raise HandoutError("removing the hidden checks changed more than the hidden [[check]] "
                           "tables (is a '[' at column 0 inside a value?)")
    return result


def _hidden_names(toml_text: str) -> list[str]:
    try:
        data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError:
        return []
    return [c["name"] for c in data.get("check", [])
            if isinstance(c, dict) and c.get("hidden") is True and isinstance(c.get("name"), str)]


# ---- Markdown: sections about solution regions -------------------------------

def _strip_marker_sections(md: str) -> str:
    """Drop each Markdown section (heading to next heading) that shows a marker.

    The instructor's docs explain solution regions with an example region; the
    student's copy has no use for that section and must not hold a marker.
    """
    lines = md.splitlines(keepends=True)
    sections: list[list[str]] = [[]]
    fence = None
    for ln in lines:
        s = ln.lstrip()
        if fence is None and re.match(r"#{1,6}\s", ln):
            sections.append([])
        if s.startswith("```") or s.startswith("~~~"):
            if fence is None:
                fence = s[:3]
            elif s.startswith(fence):
                fence = None
        sections[-1].append(ln)
    kept = [sec for sec in sections if not _ANY_MARKER_RE.search("".join(sec))]
    return "".join("".join(sec) for sec in kept)


# ---- the tree ----------------------------------------------------------------

def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in EXCLUDE_NAMES or n.endswith(EXCLUDE_SUFFIXES)}


def _check_out(root: Path, out: Path):
    if out == root:
        raise HandoutError(f"the handout cannot be written over the course tree itself ({out})")
    if root.is_relative_to(out):
        raise HandoutError(f"refusing to replace {out}: it contains the course tree {root}")
    for name in PROTECTED:
        if out.is_relative_to(root / name):
            raise HandoutError(f"refusing to write the handout inside {name}/ ({out}): "
                               "it would be copied into itself; use e.g. dist/handout")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise HandoutError(f"refusing to replace {out}: it is not a directory")
        if any(out.iterdir()) and not ((out / "Makefile").is_file() and (out / "grader").is_dir()):
            raise HandoutError(f"refusing to replace {out}: it is not empty and does not look "
                               "like a memlab handout (no Makefile and grader/)")


def _source_files(tree: Path):
    """The C sources where solution regions may be: .c and .h under labs/ and common/."""
    for top in ("labs", "common"):
        base = tree / top
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.suffix in (".c", ".h") and p.is_file() and not p.is_symlink():
                yield p


def _stubbed(path: Path, root: Path) -> str | None:
    """A C source of labs/ or common/ (under root) with its solution regions replaced by
    their stubs, or None when path is no such source or has no regions."""
    rel = path.relative_to(root)
    if rel.parts[:1] not in (("labs",), ("common",)) or path.suffix not in (".c", ".h"):
        return None
    text = path.read_text()
    return strip_solutions(text, rel.as_posix()) if _ANY_MARKER_RE.search(text) else None


def source_for_grading(path: Path, root: Path) -> bytes:
    """The bytes of a course file as a grader that is not the instructor's needs them
    (the Gradescope zip): a C source with solution regions gets its stubs instead.
    Grading never uses the reference solutions (the student's file takes the lab's
    place), and where the sandbox cannot run a hostile submission could read them, or
    quote them in its own compiler errors."""
    stubbed = _stubbed(path, root)
    return path.read_bytes() if stubbed is None else stubbed.encode()


def _copy_tree(root: Path, dest: Path):
    dest.mkdir()
    for name in INCLUDE:
        src = root / name
        if src.is_symlink() or src.is_file():
            shutil.copy2(src, dest / name, follow_symlinks=False)
        elif src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=_ignore)
    shutil.copymode(root, dest)


def _write_keep_mode(path: Path, text: str):
    mode = path.stat().st_mode
    path.write_text(text)
    os.chmod(path, mode)


def _transform(dest: Path):
    # 1. solutions out of every C source that has markers
    for src in _source_files(dest):
        stubbed = _stubbed(src, dest)
        if stubbed is not None:
            _write_keep_mode(src, stubbed)
    # 2. hidden checks out of every lab.toml
    labs = dest / "labs"
    if labs.is_dir():
        for toml in sorted(labs.glob("*/lab.toml")):
            text = toml.read_text()
            try:
                new = strip_hidden_checks(text)
            except HandoutError as e:
                raise HandoutError(f"{toml.relative_to(dest)}: {e}") from None
            if new != text:
                _write_keep_mode(toml, new)
    # 3. the student's README
    readme = dest / HANDOUT_README
    if readme.is_file():
        shutil.copyfile(readme, dest / "README.md")
        readme.unlink()
    # 4. instructors' guides stay home
    for rel in INSTRUCTOR_ONLY:
        (dest / rel).unlink(missing_ok=True)
    # 5. docs that explain solution regions lose that section
    docs = dest / "docs"
    if docs.is_dir():
        for md in sorted(docs.rglob("*.md")):
            text = md.read_text()
            if _ANY_MARKER_RE.search(text):
                _write_keep_mode(md, _strip_marker_sections(text))


def write_manifest(dest: Path) -> dict:
    """Record the lab files of the handout at dest, as distributed, in dest/MANIFEST."""
    import hashlib
    import json
    from . import __version__
    labs = {}
    for toml in sorted((dest / "labs").glob("*/lab.toml")):
        src = toml.parent / f"{toml.parent.name}.c"
        if src.is_file():
            labs[toml.parent.name] = {"path": src.relative_to(dest).as_posix(),
                                      "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    doc = {"format": 1, "memlab_version": __version__, "labs": labs}
    (dest / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def make_handout(root: Path, out: Path) -> Path:
    """Write the verified student version of the tree at root into out; return out."""
    root = Path(root).resolve()
    if not (root / "labs").is_dir() or not (root / "grader").is_dir():
        raise HandoutError(f"{root} is not a memlab tree (no labs/ and grader/)")
    given = Path(out)
    out = Path(os.path.abspath(given))
    out = out.parent.resolve() / out.name      # symlinks above out cannot hide where it is
    _check_out(root, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        dest = work / "tree"
        try:
            _copy_tree(root, dest)
        except OSError as e:
            raise HandoutError(f"cannot copy the tree: {e}") from None
        _transform(dest)
        write_manifest(dest)
        verify_handout(root, dest)
        if out.exists():
            shutil.rmtree(out)
        dest.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return given


# ---- verification --------------------------------------------------------------

def _meaningful(line: str) -> bool:
    s = line.strip()
    if len(s) < MEANINGFUL_LEN or set(s) <= _BRACES_ONLY:
        return False
    if s.startswith("//") or s.startswith("*"):
        return False
    if s.startswith("/*") and ("*/" not in s or (s.endswith("*/") and s.count("*/") == 1)):
        return False
    return True


def _read_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _files(tree: Path):
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                yield p


def verify_handout(root: Path, out: Path) -> None:
    """Raise HandoutError listing every problem: markers left in out, lines of the
    reference solutions found in any text file of out, hidden checks in out's lab.toml
    files (or a lab.toml that no longer loads).

    A solution line counts when it is meaningful (at least 12 characters, not only a
    comment or braces) and is not also in the same file outside the regions or in a
    stub. A C source of out whose reference has the line in its public part (another
    lab doing the same thing in the open) does not count as a leak of it.
    """
    root, out = Path(root), Path(out)
    problems: list[str] = []

    # markers: in every file, text or not
    for p in _files(out):
        try:
            data = p.read_bytes()
        except OSError as e:
            problems.append(f"{p.relative_to(out)}: cannot read: {e.strerror}")
            continue
        for m in _ANY_MARKER_BYTES_RE.finditer(data):
            lineno = data.count(b"\n", 0, m.start()) + 1
            problems.append(f"{p.relative_to(out)}:{lineno}: marker "
                            f"'{m.group().decode(errors='replace')}' left in the handout")

    # solution lines of the reference tree
    needles: dict[str, str] = {}            # stripped line -> where it comes from
    public: dict[str, str] = {}             # relative path -> public text of a reference source
    for src in _source_files(root):
        rel = src.relative_to(root).as_posix()
        text = src.read_text()
        try:
            stripped, regions = _parse(text, rel)
        except HandoutError as e:
            problems.append(str(e))
            continue
        public[rel] = stripped
        for region in regions:
            for lineno, line in region.solution:
                s = line.strip()
                if _meaningful(line) and s not in stripped:
                    needles.setdefault(s, f"{rel}:{lineno}")
    if needles:
        for p in _files(out):
            text = _read_text(p)
            if text is None:
                continue
            rel = p.relative_to(out).as_posix()
            for needle, origin in needles.items():
                if needle in text and needle not in public.get(rel, ""):
                    lineno = text.count("\n", 0, text.index(needle)) + 1
                    problems.append(f"{rel}:{lineno}: solution line of {origin} leaked: {needle}")

    # hidden checks
    hidden: set[str] = set()
    labs = root / "labs"
    for toml in sorted(labs.glob("*/lab.toml")) if labs.is_dir() else []:
        hidden.update(_hidden_names(toml.read_text()))
    out_labs = out / "labs"
    for toml in sorted(out_labs.glob("*/lab.toml")) if out_labs.is_dir() else []:
        rel = toml.relative_to(out).as_posix()
        text = toml.read_text()
        for name in sorted(hidden):
            m = re.search(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])", text)
            if m:
                lineno = text.count("\n", 0, m.start()) + 1
                problems.append(f"{rel}:{lineno}: hidden check name '{name}' left in the handout")
        try:
            lab = load(toml.parent)
        except SpecError as e:
            problems.append(f"{rel}: does not load any more: {e}")
        else:
            problems += [f"{rel}: check '{c.name}' is hidden" for c in lab.checks if c.hidden]

    if problems:
        problems = list(dict.fromkeys(problems))
        raise HandoutError(f"the handout in {out} is not safe to give out "
                           f"({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n  "
                           + "\n  ".join(problems))
