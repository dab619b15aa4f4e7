"""`make submit` (grader/submit.py) and the handout's manifest (grader/handout.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.build import make_env  # noqa: E402
from grader.handout import MANIFEST, make_handout, verify_handout  # noqa: E402
from grader.submit import error_excerpt, submit  # noqa: E402

LABS = [lab.name for lab in spec.discover(ROOT / "labs")]
PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One handout for the module; each test works on its own copy."""
    return make_handout(ROOT, tmp_path_factory.mktemp("handout") / "h")


@pytest.fixture
def handout(pristine, tmp_path) -> Path:
    h = tmp_path / "h"
    shutil.copytree(pristine, h, symlinks=True)
    return h


def make_submit(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "submit"], cwd=tree,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=make_env(), timeout=300)


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


# ---- the manifest --------------------------------------------------------------

def test_handout_records_every_lab_file_as_distributed(pristine):
    doc = json.loads((pristine / MANIFEST).read_text())
    assert sorted(doc["labs"]) == sorted(LABS)
    for lab, entry in doc["labs"].items():
        assert entry["path"] == f"labs/{lab}/{lab}.c"
        stub = (pristine / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(stub).hexdigest()
        # the stub, not the reference solution
        assert entry["sha256"] != hashlib.sha256((ROOT / entry["path"]).read_bytes()).hexdigest()
    verify_handout(ROOT, pristine)          # the manifest leaks nothing
    assert not (pristine / "docs" / "gradescope.md").exists()      # instructors only


# ---- make submit in the handout ----------------------------------------------------

def test_make_submit_packs_exactly_the_changed_labs(handout):
    shutil.copyfile(ROOT / "labs" / "cow" / "cow.c", handout / "labs" / "cow" / "cow.c")
    faults = handout / "labs" / "faults" / "faults.c"
    faults.write_text(faults.read_text() + "\nint broken_on_purpose(\n")

    r = make_submit(handout)
    assert r.returncode == 0, r.stdout
    out = r.stdout
    archive = handout / "submission.tar.gz"
    got = members(archive)
    assert sorted(got) == ["labs/cow/cow.c", "labs/faults/faults.c"]
    assert all(m.isreg() and m.mode == 0o644 for m in got.values())
    with tarfile.open(archive) as tar:
        assert tar.extractfile("labs/cow/cow.c").read() == (ROOT / "labs/cow/cow.c").read_bytes()
        assert tar.extractfile("labs/faults/faults.c").read() == faults.read_bytes()

    # the listing, the compile warning with the compiler's words, what was left out
    assert "packed 2 files into submission.tar.gz" in out
    cow_line = next(ln for ln in out.splitlines() if ln.strip().startswith("labs/cow/cow.c"))
    faults_line = next(ln for ln in out.splitlines()
                       if ln.strip().startswith("labs/faults/faults.c"))
    assert cow_line.endswith("compiles") and faults_line.endswith("DOES NOT COMPILE")
    assert "warning: labs/faults/faults.c does not compile" in out
    assert "error:" in out.split("warning:", 1)[1]
    assert "labs/faults/faults.c:" in out                   # the compiler's line, with its file
    unchanged = next(ln for ln in out.splitlines() if ln.startswith("not packed"))
    assert set(unchanged.split(": ", 1)[1].split(", ")) == set(LABS) - {"cow", "faults"}
    # the compile check built nowhere in the tree
    assert not (handout / "build" / "labs" / "faults").exists()
    assert not (handout / "build" / "labs" / "cow").exists()


def test_nothing_changed_packs_nothing(handout):
    r = make_submit(handout)
    assert r.returncode != 0
    assert "nothing to submit" in r.stdout
    assert not (handout / "submission.tar.gz").exists()


def test_a_missing_lab_file_is_said(handout, capsys):
    (handout / "labs" / "maps" / "maps.c").unlink()
    shutil.copyfile(ROOT / "labs" / "cow" / "cow.c", handout / "labs" / "cow" / "cow.c")
    out = handout / "out" / "s.tar.gz"
    assert submit(handout, out) == 0
    text = capsys.readouterr().out
    assert "labs/maps/maps.c is missing" in text
    assert sorted(members(out)) == ["labs/cow/cow.c"]


def test_submit_in_the_course_tree_says_it_is_for_the_handout(tmp_path):
    out = tmp_path / "s.tar.gz"
    r = subprocess.run([PY, "-m", "grader", "--root", str(ROOT), "submit", "--out", str(out)],
                       cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "is for the student handout" in r.stderr and "make handout" in r.stderr
    assert not out.exists()


def test_a_damaged_manifest_is_said(handout, capsys):
    (handout / MANIFEST).write_text("{not json")
    assert submit(handout, handout / "s.tar.gz") == 2
    assert "not a readable handout manifest" in capsys.readouterr().err


def test_error_excerpt_prefers_the_compilers_errors():
    log = ("cc -c x.c\nx.c:3:1: error: expected ';'\n    3 | int x\n"
           "make: *** [Makefile:76: build/x] Error 1\n")
    assert error_excerpt(log) == ["x.c:3:1: error: expected ';'"]
    assert error_excerpt("ld: something odd\n") == ["ld: something odd"]


def test_make_help_lists_submit_and_gradescope():
    r = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "help"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, env=make_env(),
                       timeout=60)
    assert r.returncode == 0
    assert "make submit" in r.stdout and "make gradescope" in r.stdout
