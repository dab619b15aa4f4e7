"""grader/handout.py: solutions and hidden checks stripped, the result verified."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.handout import (HandoutError, make_handout, strip_hidden_checks,  # noqa: E402
                            strip_solutions, verify_handout)

# Markers assembled from their words, as in grader/handout.py, so that this file
# reads the same to a grep for leftover markers.
SOL = "SOLUTION"
BEGIN = f"/* BEGIN {SOL} */"
STUB = "/* " + "STUB"
END = f"END {SOL} */"
END_BARE = f"/* END {SOL} */"


def c(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# ---- strip_solutions -----------------------------------------------------------

def test_region_with_stub_keeps_stub_and_its_indentation():
    src = c("static void f(char *p)",
            "{",
            f"    {BEGIN}",
            "    p[0] = secret_value(p);",
            f"    {STUB}",
            "    // TODO: store something",
            "        (void)p;",
            f"    {END}",
            "}")
    assert strip_solutions(src, "f.c") == c("static void f(char *p)",
                                            "{",
                                            "    // TODO: store something",
                                            "        (void)p;",
                                            "}")


def test_region_without_stub_is_removed():
    src = c("int x;", BEGIN, "int secret = 42;", END_BARE, "int y;")
    assert strip_solutions(src, "f.c") == c("int x;", "int y;")


def test_markers_may_be_surrounded_by_whitespace():
    src = c("a();", f"\t  {BEGIN}  ", "secret();", f" {STUB}\t", "stub();", f"  {END}   ", "b();")
    assert strip_solutions(src, "f.c") == c("a();", "stub();", "b();")


def test_several_regions():
    src = c("head();",
            BEGIN, "one();", STUB, "stub_one();", END,
            "middle();",
            BEGIN, "two();", END_BARE,
            "    " + BEGIN, "    three();", "    " + STUB, "    stub_three();", "    " + END,
            "tail();")
    assert strip_solutions(src, "f.c") == c("head();", "stub_one();", "middle();",
                                            "    stub_three();", "tail();")


def test_text_without_regions_is_unchanged():
    src = "int main(void)\n{\n    return 0; /* nothing to hide */\n}"
    assert strip_solutions(src, "f.c") == src


def test_empty_stub_leaves_nothing():
    assert strip_solutions(c("a();", BEGIN, "s();", STUB, END, "b();"), "f.c") == c("a();", "b();")


@pytest.mark.parametrize("lines, lineno, words", [
    ([BEGIN, "x();", BEGIN, "y();", END_BARE, END_BARE], 3, "nest"),
    (["a();", "b();", END], 3, "without"),
    (["a();", END_BARE], 2, "without"),
    (["a();", BEGIN, "x();", STUB, "y();"], 2, "never closed"),
    (["a();", BEGIN, "x();"], 2, "never closed"),
    ([BEGIN, "x();", STUB, "y(); /* no */", END], 4, "*/"),
    (["a();", STUB, "y();", END], 2, "outside"),
    ([BEGIN, "x();", STUB, STUB, END], 4, "second"),
    ([BEGIN, "x();", END], 3, "has none"),
    ([BEGIN, "x();", STUB, "y();", END_BARE], 5, "ends with"),
    (["a(); " + BEGIN], 1, "stand alone"),
])
def test_errors_name_file_and_line(lines, lineno, words):
    with pytest.raises(HandoutError) as e:
        strip_solutions(c(*lines), "labs/x/x.c")
    assert str(e.value).startswith(f"labs/x/x.c:{lineno}: ")
    assert words in str(e.value)


# ---- strip_hidden_checks ---------------------------------------------------------

TOML = '''# A lab for the tests.
[lab]
title = "t"

[[run]]
name = "main"
args = []

[[check]]
name = "visible_one"
title = "first"
points = 1
run = "main"
observed = "run.exit"
expect = [0, 0]

# a comment inside the secret check
[[check]]
name = "secret_middle"   # graded, never shown
title = "hidden in the middle"
points = 2
run = "main"
observed = "run.exit"
expect = [0, 0]
require = [
  { expr = "run.exit == 0", why = "no" },
]
hidden = true

# this comment belongs to visible_two
[[check]]
name = "visible_two"
title = "second"
points = 1
run = "main"
observed = "run.exit"
expect = "value == 0"
hidden = false
'''

HIDDEN_LAST = '''
[[check]]
name = "secret_last"
title = "hidden at the end"
points = 1
run = "main"
observed = "run.exit"
expect = [0, 0]
hidden = true
'''


def _check_names(text: str) -> list[str]:
    return [ch["name"] for ch in tomllib.loads(text)["check"]]


def test_hidden_check_in_the_middle_is_removed_and_the_rest_kept():
    out = strip_hidden_checks(TOML)
    assert _check_names(out) == ["visible_one", "visible_two"]
    assert "secret_middle" not in out and "hidden in the middle" not in out
    assert "# A lab for the tests.\n" in out
    assert "# this comment belongs to visible_two\n[[check]]\nname = \"visible_two\"" in out
    # everything else is byte for byte what it was
    assert out == TOML.replace(TOML[TOML.index("[[check]]\nname = \"secret_middle\""):
                                   TOML.index("# this comment belongs")], "")


def test_hidden_check_at_the_end_is_removed():
    text = TOML.replace("hidden = true\n", "") + HIDDEN_LAST
    out = strip_hidden_checks(text)
    assert _check_names(out) == ["visible_one", "secret_middle", "visible_two"]
    assert "secret_last" not in out
    assert out == TOML.replace("hidden = true\n", "")


def test_both_hidden_checks_removed_and_result_loads(tmp_path):
    out = strip_hidden_checks(TOML + HIDDEN_LAST)
    assert _check_names(out) == ["visible_one", "visible_two"]
    lab = tmp_path / "demo"
    lab.mkdir()
    (lab / "lab.toml").write_text(out)
    loaded = spec.load(lab)
    assert [ch.name for ch in loaded.checks] == ["visible_one", "visible_two"]
    assert not any(ch.hidden for ch in loaded.checks)


def test_nothing_hidden_is_unchanged():
    text = TOML.replace("hidden = true\n", "")
    assert strip_hidden_checks(text) == text


def test_real_lab_tomls_strip_and_load():
    for toml in sorted((ROOT / "labs").glob("*/lab.toml")):
        text = toml.read_text()
        out = strip_hidden_checks(text)
        tomllib.loads(out)
        visible = [ch["name"] for ch in tomllib.loads(text).get("check", []) if not ch.get("hidden")]
        assert _check_names(out) == visible, toml


# ---- verify_handout on small fake trees ----------------------------------------------

SOLUTION_LINE = "for (size_t off = 0; off < len; off += page)"
LAB_C = c("static void touch(char *p, size_t len, size_t page)",
          "{",
          f"    {BEGIN}",
          f"    {SOLUTION_LINE}",
          "        p[off] = 1;",
          f"    {STUB}",
          "    // TODO: write one byte in every page",
          "    (void)p; (void)len; (void)page;",
          f"    {END}",
          "}")
LAB_TOML = TOML


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "labs" / "demo").mkdir(parents=True)
    (root / "grader").mkdir()
    (root / "labs" / "demo" / "demo.c").write_text(LAB_C)
    (root / "labs" / "demo" / "lab.toml").write_text(LAB_TOML)
    return root


def fake_handout(root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "labs" / "demo").mkdir(parents=True)
    (out / "labs" / "demo" / "demo.c").write_text(strip_solutions(LAB_C, "demo.c"))
    (out / "labs" / "demo" / "lab.toml").write_text(strip_hidden_checks(LAB_TOML))
    (out / "README.md").write_text("# demo\n")
    return out


def test_verify_accepts_a_clean_handout(tmp_path):
    root = fake_root(tmp_path)
    verify_handout(root, fake_handout(root, tmp_path))


def test_verify_catches_a_leaked_solution_line(tmp_path):
    root = fake_root(tmp_path)
    out = fake_handout(root, tmp_path)
    (out / "labs" / "demo" / "README.md").write_text(
        f"Hint:\n\n```c\n        {SOLUTION_LINE}\n```\n")
    with pytest.raises(HandoutError) as e:
        verify_handout(root, out)
    msg = str(e.value)
    assert "labs/demo/README.md:4" in msg and SOLUTION_LINE in msg and "labs/demo/demo.c:4" in msg


def test_verify_ignores_short_lines_and_lines_also_in_the_stub(tmp_path):
    root = fake_root(tmp_path)
    out = fake_handout(root, tmp_path)
    # "p[off] = 1;" is too short to prove anything
    (out / "notes.txt").write_text("p[off] = 1;\n")
    verify_handout(root, out)


def test_verify_catches_a_leftover_marker(tmp_path):
    root = fake_root(tmp_path)
    out = fake_handout(root, tmp_path)
    (out / "labs" / "demo" / "extra.h").write_text(c("int a;", f"  {STUB}", "int b;"))
    (out / "docs").mkdir()
    (out / "docs" / "notes.md").write_text(f"see {BEGIN}\n")
    with pytest.raises(HandoutError) as e:
        verify_handout(root, out)
    msg = str(e.value)
    assert "labs/demo/extra.h:2" in msg and "docs/notes.md:1" in msg and "2 problems" in msg


def test_verify_catches_a_hidden_check(tmp_path):
    root = fake_root(tmp_path)
    out = fake_handout(root, tmp_path)
    (out / "labs" / "demo" / "lab.toml").write_text(LAB_TOML)
    with pytest.raises(HandoutError) as e:
        verify_handout(root, out)
    assert "secret_middle" in str(e.value)


# ---- make_handout --------------------------------------------------------------

def test_make_handout_on_a_fake_tree(tmp_path):
    root = fake_root(tmp_path)
    (root / "Makefile").write_text("all:\n")
    (root / "README.md").write_text("instructor readme\n")
    (root / "docs").mkdir()
    (root / "docs" / "handout-README.md").write_text("student readme\n")
    (root / "docs" / "guide.md").write_text(
        f"# Guide\n\nIntro.\n\n## Regions\n\n```c\n# not a heading\n{BEGIN}\nx();\n{END_BARE}\n```\n\n"
        "## Checks\n\nKept.\n")
    (root / "deps").mkdir()
    (root / "deps" / "install").write_text("#!/bin/sh\n")
    (root / "deps" / "install").chmod(0o755)
    for junk in ("tests", "build", ".git", "bench", ".ci", "grader/__pycache__"):
        (root / junk).mkdir(parents=True, exist_ok=True)
        (root / junk / "x.txt").write_text("x\n")
    (root / "grader" / "mod.pyc").write_bytes(b"\0")
    out = tmp_path / "dist" / "handout"
    out.mkdir(parents=True)
    (out / "Makefile").write_text("old handout\n")
    (out / "grader").mkdir()
    (out / "stale").write_text("from an older handout\n")

    assert make_handout(root, out) == out
    assert sorted(p.name for p in out.iterdir()) == [".memlab", "Makefile", "README.md", "deps",
                                                     "docs", "grader", "labs"]
    assert (out / "README.md").read_text() == "student readme\n"
    assert not (out / "docs" / "handout-README.md").exists()
    # the instructor's section about solution regions is not in the student's docs
    assert (out / "docs" / "guide.md").read_text() == "# Guide\n\nIntro.\n\n## Checks\n\nKept.\n"
    assert os.access(out / "deps" / "install", os.X_OK)
    assert list((out / "grader").iterdir()) == []
    assert SOLUTION_LINE not in (out / "labs" / "demo" / "demo.c").read_text()
    assert "secret_middle" not in (out / "labs" / "demo" / "lab.toml").read_text()
    assert not list(tmp_path.joinpath("dist").glob(".handout*"))      # no temporary left


def test_make_handout_refuses_dangerous_destinations(tmp_path):
    root = fake_root(tmp_path)
    for bad in (root, tmp_path, root / "labs" / "h", root / "grader" / "h"):
        with pytest.raises(HandoutError):
            make_handout(root, bad)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    with pytest.raises(HandoutError, match="does not look like"):
        make_handout(root, precious)
    assert (precious / "thesis.tex").exists()


def test_make_handout_fails_without_writing_when_a_region_is_broken(tmp_path):
    root = fake_root(tmp_path)
    (root / "labs" / "demo" / "demo.c").write_text(c("a();", BEGIN, "secret();"))
    out = tmp_path / "out"
    with pytest.raises(HandoutError, match=r"labs/demo/demo.c:2: .*never closed"):
        make_handout(root, out)
    assert not out.exists()


# ---- end to end, on the real tree -------------------------------------------------

def test_real_handout_builds_and_its_stubs_fail(tmp_path):
    out = make_handout(ROOT, tmp_path / "h")
    assert not (out / "tests").exists()
    assert not (out / ".git").exists() and not (out / "build").exists()
    labs = sorted(p.parent.name for p in (ROOT / "labs").glob("*/lab.toml"))
    assert labs
    for lab in labs:
        ref = (ROOT / "labs" / lab / f"{lab}.c").read_text()
        assert (out / "labs" / lab / f"{lab}.c").read_text() != ref, lab
    verify_handout(ROOT, out)

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    b = subprocess.run(["make", "-C", str(out), "build", f"BUILD={tmp_path / 'b'}", "-j4"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env, timeout=180)
    assert b.returncode == 0, b.stdout
    for lab in labs:
        assert (tmp_path / "b" / "labs" / lab / lab).is_file()

    if "faults" not in labs:
        pytest.skip("no faults lab")
    r = subprocess.run(["/usr/bin/python3", "-m", "grader", "--root", str(out), "run", "faults",
                        "--seed", "1"], cwd=out, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env, timeout=120)
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stdout, r.stdout
    assert "Score:" in r.stdout, r.stdout
