"""Batch grading (grader/batch.py, grader/submissions.py, grader/gradebook.py): a class
of good, broken and hostile submissions, resume, interruption, hidden checks, Autolab.

The end-to-end runs use --unsafe (no sandbox) and the two fastest labs, maps and
threshold; the archive tests need no lab at all."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from grader import submissions as subs  # noqa: E402
from grader.batch import autolab_line, mark_failed, student_seed  # noqa: E402
from grader.gradebook import Row, gradebook_csv, junit_xml  # noqa: E402
from test_results import validate  # noqa: E402

LABS = "maps threshold"
MAPS = (ROOT / "labs" / "maps" / "maps.c").read_bytes()
THRESHOLD = (ROOT / "labs" / "threshold" / "threshold.c").read_bytes()
PY = sys.executable


def grader(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "grader", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


# ---- archive makers ---------------------------------------------------------------

def tgz(path: Path, members: list) -> Path:
    """members: (name, bytes) for files, or ready TarInfo objects (links, devices)."""
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def zipped(path: Path, members: list) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _deflate_zeros(prefix: bytes, mib: int) -> bytes:
    """A raw deflate stream of prefix + mib MiB of zeros, made in milliseconds: one
    flushed block of 1 MiB of zeros, repeated (each starts afresh after a full flush)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    seg = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + seg * mib + b"\x03\x00"          # an empty final block ends it


def zip_bomb(path: Path, name: str = "data/zeros.bin", gib: int = 2) -> Path:
    """A zip of one file of `gib` GiB of zeros (about 2 MiB on disk), written by hand."""
    mib = gib * 1024
    data = _deflate_zeros(b"", mib)
    crc = 0
    block = bytes(1 << 20)
    one = zlib.crc32(block)
    for _ in range(mib):
        crc = zlib.crc32(block, crc) if crc else one
    size = mib << 20
    n = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data),
                        size & 0xFFFFFFFF, len(n), 0) + n
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc,
                          len(data), size & 0xFFFFFFFF, len(n), 0, 0, 0, 0, 0o100644 << 16, 0) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


def tgz_bomb(path: Path, gib: int = 2) -> Path:
    """A .tar.gz holding one file of `gib` GiB of zeros (a few MiB on disk)."""
    info = tarfile.TarInfo("data/zeros.bin")
    info.size = gib << 30
    body = _deflate_zeros(info.tobuf(format=tarfile.GNU_FORMAT), gib * 1024)
    # gzip: header, raw deflate, crc and size (wrong: nobody may read that far)
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + body + b"\x00" * 8)
    return path


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


# ---- submissions.py: names -----------------------------------------------------------

def test_student_id_and_csv_cell():
    assert subs.student_id("alice") == "alice"
    assert subs.student_id("Ève O'Brien (late)") == "Ève_O_Brien_late"
    assert subs.student_id("../../etc") == "etc"
    assert subs.student_id("..") == "student"
    assert subs.student_id(".work") == "work"
    assert subs.student_id("a/b\\c d") == "a_b_c_d"
    assert subs.student_id("gradebook.csv") == "gradebook.csv_"
    assert len(subs.student_id("x" * 500)) <= subs.NAME_MAX
    for bad in ("=1+2", "+1", "-2", "@SUM(A1)", "\t=1", " -x"):
        assert subs.csv_cell(bad).startswith("'")
    assert subs.csv_cell("alice") == "alice"
    assert subs.csv_cell("a\nb\x00c") == "a b c"


def test_split_name():
    assert subs.split_name("alice.tar.gz") == ("alice", ".tar.gz")
    assert subs.split_name("bob.TGZ") == ("bob", ".tgz")
    assert subs.split_name("c.d.zip") == ("c.d", ".zip")
    assert subs.split_name("notes.txt") == ("notes.txt", "")


def test_find_entries(tmp_path):
    (tmp_path / "dave").mkdir()
    zipped(tmp_path / "dave.zip", [("maps/maps.c", MAPS)])
    (tmp_path / "a b").mkdir()
    (tmp_path / "a_b").mkdir()
    (tmp_path / ".DS_Store").write_text("x")
    (tmp_path / "readme.txt").write_text("x")
    es = {e.path.name: e for e in subs.find_entries(tmp_path)}
    assert ".DS_Store" not in es
    assert "2 entries for student 'dave'" in es["dave"].problem
    assert es["dave"].problem == es["dave.zip"].problem
    assert es["dave"].student != es["dave.zip"].student          # each its own folder
    assert es["a b"].student != es["a_b"].student
    assert es["a b"].student.startswith("a_b~")
    assert es["readme.txt"].kind == "other" and "not a submission" in es["readme.txt"].problem
    tgz(tmp_path / "fay.tar.gz", [("maps/maps.c", MAPS)])
    tgz(tmp_path / "fay.tgz", [("maps/maps.c", MAPS)])
    (tmp_path / "Fay").mkdir()
    es = {e.path.name: e for e in subs.find_entries(tmp_path)}
    # fay and Fay differ in case only: suffixes (a folder copied to macOS stays apart)
    assert es["fay.tar.gz"].student.endswith(".tar.gz") and es["fay.tgz"].student.endswith(".tgz")
    assert "2 entries for student 'fay'" in es["fay.tgz"].problem
    assert not es["Fay"].problem and es["Fay"].student.startswith("Fay~")
    ids = [e.student.lower() for e in es.values()]
    assert len(ids) == len(set(ids))


# ---- submissions.py: taking the lab files out safely -----------------------------------

def prep(tmp_path, path, labs=("maps", "threshold")):
    work = tmp_path / "work"
    p = subs.prepare(path, list(labs), work)
    written = sorted(str(f.relative_to(work)) for f in work.rglob("*"))
    assert set(written) <= {"src", "submission.json", "src/maps", "src/maps/maps.c",
                            "src/threshold", "src/threshold/threshold.c"}, written
    assert subs.load_prepared(work) == p
    return p


def test_layouts(tmp_path):
    d = tmp_path / "alice"
    (d / "maps").mkdir(parents=True)
    (d / "maps" / "maps.c").write_bytes(MAPS)
    (d / "labs" / "threshold").mkdir(parents=True)
    (d / "labs" / "threshold" / "threshold.c").write_bytes(THRESHOLD)
    (d / "Makefile").write_text("all:\n\trm -rf /\n")          # never used
    p = prep(tmp_path, d)
    assert p.files == {"maps": "maps/maps.c", "threshold": "labs/threshold/threshold.c"}
    assert not p.refused and not p.problems
    assert (tmp_path / "work/src/maps/maps.c").read_bytes() == MAPS


def test_one_top_folder_and_priorities(tmp_path):
    a = tgz(tmp_path / "bob.tar.gz", [("./handout/labs/maps/maps.c", MAPS),
                                      ("handout/maps/x.c", b"int x;"),
                                      ("__MACOSX/maps/maps.c", b"junk")])
    p = prep(tmp_path, a)
    assert p.files == {"maps": "handout/labs/maps/maps.c"} and not p.refused
    b = zipped(tmp_path / "carol.zip", [("maps/maps.c", MAPS), ("old/maps/maps.c", b"old")])
    p = prep(tmp_path, b)
    assert p.files == {"maps": "maps/maps.c"}
    assert any("ignored old/maps/maps.c" in n for n in p.notes)
    c = zipped(tmp_path / "two.zip", [("a/maps/maps.c", MAPS), ("b/maps/maps.c", MAPS)])
    p = prep(tmp_path, c)
    assert "more than one candidate" in p.problems["maps"] and not p.files


def test_digest_is_about_the_lab_files(tmp_path):
    a = prep(tmp_path, tgz(tmp_path / "a.tar.gz", [("maps/maps.c", MAPS), ("notes.txt", b"1")]))
    b = prep(tmp_path, zipped(tmp_path / "b.zip", [("labs/maps/maps.c", MAPS), ("x", b"2")]))
    c = prep(tmp_path, zipped(tmp_path / "c.zip", [("maps/maps.c", MAPS + b"\n")]))
    assert a.digest == b.digest != c.digest


@pytest.mark.parametrize("members, why", [
    ([("../evil.c", b"x"), ("maps/maps.c", MAPS)], "goes up with '..'"),
    ([("maps/../../evil.c", b"x")], "goes up with '..'"),
    ([("/tmp/evil.c", b"x")], "is absolute"),
    ([link("maps/maps.c", "/etc/passwd")], "symbolic link"),
    ([("maps/real.c", MAPS), link("maps/maps.c", "maps/real.c", tarfile.LNKTYPE)], "hard link"),
    ([link("dev", "", tarfile.CHRTYPE)], "a device"),
    ([link("fifo", "", tarfile.FIFOTYPE)], "a FIFO"),
], ids=["dotdot", "dotdot-inside", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_unsafe_tar_members_refuse_the_entry(tmp_path, members, why):
    p = prep(tmp_path, tgz(tmp_path / "x.tar.gz", members))
    assert why in p.refused and not p.files
    assert not list(tmp_path.rglob("evil.c"))
    assert not Path("/tmp/evil.c").exists() or Path("/tmp/evil.c").stat().st_mtime < time.time() - 60


@pytest.mark.parametrize("name, why", [("../evil.c", "'..'"), ("/abs/evil.c", "absolute"),
                                       ("C:\\evil.c", "absolute"), ("a\\..\\..\\evil.c", "'..'")])
def test_unsafe_zip_members_refuse_the_entry(tmp_path, name, why):
    p = prep(tmp_path, zipped(tmp_path / "x.zip", [("maps/maps.c", MAPS), (name, b"x")]))
    assert why in p.refused and not p.files


def test_zip_symlink_and_folder_symlink(tmp_path):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("maps/maps.c")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    assert "symbolic link" in prep(tmp_path, z).refused
    d = tmp_path / "linky"
    (d / "maps").mkdir(parents=True)
    (d / "maps" / "maps.c").symlink_to("/etc/passwd")
    assert "symbolic link" in prep(tmp_path, d).refused
    d2 = tmp_path / "fifo"
    (d2 / "maps").mkdir(parents=True)
    os.mkfifo(d2 / "maps" / "maps.c")
    assert "special file" in prep(tmp_path, d2).refused      # never opened: it would block


def test_bombs_are_refused_quickly(tmp_path):
    t = time.monotonic()
    z = prep(tmp_path, zip_bomb(tmp_path / "bomb.zip"))
    assert "archive bomb" in z.refused and "declares" in z.refused
    g = prep(tmp_path, tgz_bomb(tmp_path / "bomb.tar.gz"))
    assert "archive bomb" in g.refused and "decompresses to more than" in g.refused
    many = tgz(tmp_path / "many.tar.gz", [(f"f{i}", b"") for i in range(subs.MAX_MEMBERS + 5)])
    assert "more than" in prep(tmp_path, many).refused
    manyz = zipped(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(subs.MAX_MEMBERS + 5)])
    assert "members" in prep(tmp_path, manyz).refused
    assert time.monotonic() - t < 30


def test_a_huge_lab_file_is_cut_at_the_limit(tmp_path):
    """A bomb named like a lab file is read up to the limit, no further: that lab scores 0."""
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("maps/maps.c", b"/* " + b" " * (3 * subs.LAB_FILE_MAX) + b" */")
        zf.writestr("threshold/threshold.c", THRESHOLD)
    p = prep(tmp_path, z)
    assert "larger than" in p.problems["maps"] and p.files == {"threshold": "threshold/threshold.c"}


def test_corrupt_archives(tmp_path):
    (tmp_path / "c.zip").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    assert "corrupt" in prep(tmp_path, tmp_path / "c.zip").refused
    good = tgz(tmp_path / "t.tar.gz", [("maps/maps.c", MAPS)]).read_bytes()
    (tmp_path / "trunc.tgz").write_bytes(good[: len(good) // 2])
    assert "corrupt" in prep(tmp_path, tmp_path / "trunc.tgz").refused
    (tmp_path / "plain.tgz").write_bytes(b"hello")
    assert "corrupt" in prep(tmp_path, tmp_path / "plain.tgz").refused


def test_binary_and_missing_files(tmp_path):
    d = tmp_path / "x"
    (d / "maps").mkdir(parents=True)
    (d / "maps" / "maps.c").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (d / "threshold").mkdir()
    (d / "threshold" / "threshold.py").write_text("print(1)")
    p = prep(tmp_path, d)
    assert "not a C source file" in p.problems["maps"] and "threshold" not in p.files
    (tmp_path / "empty").mkdir()
    p = prep(tmp_path, tmp_path / "empty")
    assert not p.files and not p.refused and "no lab source found" in p.notes[0]


# ---- gradebook.py ----------------------------------------------------------------------

def fake_doc(score, labs, refused="", error="", hidden=False):
    tests = []
    for lab, (s, m) in labs.items():
        tests.append({"name": f"{lab}: a check", "score": s, "max_score": m,
                      "status": "passed" if s == m else "failed", "output": "out\x01put",
                      "visibility": "hidden" if hidden else "visible",
                      "extra_data": {"lab": lab, "check": "c", "verdict": "ok" if s == m else "fail",
                                     "message": "bad \x07 thing"}})
    return {"score": score, "tests": tests, "execution_time": 1.5,
            "extra_data": {"max_score": sum(m for _, m in labs.values()),
                           "labs": {lab: {"score": s, "max_score": m, "error": ""}
                                    for lab, (s, m) in labs.items()},
                           "batch": {"refused": refused, "error": error, "seed": 3}}}


def test_gradebook_csv_is_injection_safe():
    rows = [Row("@eve", fake_doc(3, {"maps": (3, 4)}, refused="=cmd|' /C calc'!A0")),
            Row("bob", fake_doc(4, {"maps": (4, 4)}))]
    text = gradebook_csv(rows, ["maps"])
    got = list(csv.reader(io.StringIO(text)))
    assert got[0] == ["student", "maps", "total", "max", "notes"]
    assert got[1][:4] == ["'@eve", "3", "3", "4"]
    assert got[1][4].startswith("refused: =cmd")          # not at the start of the cell
    assert got[2] == ["bob", "4", "4", "4", ""]


def test_junit_counts_and_control_characters():
    rows = [Row("a", fake_doc(0, {"maps": (0, 4), "cow": (2, 2)}, hidden=True)),
            Row("b", fake_doc(2, {"maps": (4, 4)}))]
    root = ET.fromstring(junit_xml(rows))
    assert root.get("tests") == "3" and root.get("failures") == "1"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["a", "b"]
    case = suites[0].find("testcase")
    assert case.get("classname") == "a.maps" and case.get("name").endswith("[hidden]")
    assert case.find("failure").get("message") == "bad ? thing"


def test_mark_failed_keeps_finished_labs():
    doc = fake_doc(4, {"maps": (4, 4), "threshold": (0, 5)})
    doc["output"] = ""
    doc["tests"][1]["extra_data"]["kind"] = "pending"
    doc["extra_data"]["batch"]["notes"] = []
    mark_failed(doc, "the grader process was killed by SIGKILL")
    assert doc["score"] == 4 and doc["extra_data"]["batch"]["error"]
    t = doc["tests"][1]
    assert t["extra_data"]["verdict"] == "error" and "SIGKILL" in t["output"]
    assert doc["tests"][0]["extra_data"]["verdict"] == "ok"
    assert "did not finish" in doc["output"]


def test_student_seed_is_stable():
    assert student_seed(5, "alice") == student_seed(5, "alice")
    assert student_seed(5, "alice") != student_seed(6, "alice")
    assert student_seed(5, "alice") != student_seed(5, "bob")


# ---- a whole class, end to end ------------------------------------------------------

def make_class(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "alice" / "maps").mkdir(parents=True)                       # a folder, two labs
    (d / "alice" / "maps" / "maps.c").write_bytes(MAPS)
    (d / "alice" / "labs" / "threshold").mkdir(parents=True)
    (d / "alice" / "labs" / "threshold" / "threshold.c").write_bytes(THRESHOLD)
    tgz(d / "bob.tar.gz", [("handout/labs/maps/maps.c", MAPS)])      # a .tar.gz, one lab
    zipped(d / "carol.zip", [("threshold/threshold.c", THRESHOLD)])  # a .zip, one lab
    tgz(d / "dotdot.tgz", [("maps/maps.c", MAPS), ("../../evil.c", b"int x;")])
    tgz(d / "absolute.tar.gz", [("/tmp/memlab-evil.c", b"int x;")])
    tgz(d / "symlink.tar.gz", [link("maps/maps.c", "/etc/shadow")])
    tgz(d / "hardlink.tar.gz", [("maps/ok.c", MAPS), link("maps/maps.c", "maps/ok.c", tarfile.LNKTYPE)])
    zip_bomb(d / "bomb.zip")
    (d / "corrupt.zip").write_bytes(b"PK\x05\x06" + os.urandom(200))
    (d / "empty").mkdir()
    (d / "broken" / "maps").mkdir(parents=True)
    (d / "broken" / "maps" / "maps.c").write_text("int main(void) { return syntax error; }\n")
    (d / "notc" / "threshold").mkdir(parents=True)
    (d / "notc" / "threshold" / "threshold.c").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(64))
    (d / "dave" / "maps").mkdir(parents=True)                        # the same student twice
    (d / "dave" / "maps" / "maps.c").write_bytes(MAPS)
    zipped(d / "dave.zip", [("maps/maps.c", MAPS)])
    (d / "@eve").mkdir()                                             # a CSV formula
    (d / "Ève O'Brien (late)" / "maps").mkdir(parents=True)          # needs sanitizing
    (d / "Ève O'Brien (late)" / "maps" / "maps.c").write_bytes(MAPS)
    return d


REFUSED = {"dotdot": "'..'", "absolute": "absolute", "symlink": "symbolic link",
           "hardlink": "hard link", "bomb": "archive bomb", "corrupt": "corrupt",
           "dave.dir": "2 entries for student 'dave'", "dave.zip": "2 entries for student 'dave'"}
GRADED = ["alice", "bob", "carol", "empty", "broken", "notc", "@eve", "Ève_O_Brien_late"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, session_build):
    base = tmp_path_factory.mktemp("batch")
    cls = make_class(base / "class")
    out = base / "out"
    t = time.monotonic()
    p = grader("batch", cls, out, "--labs", LABS, "--unsafe", "--jobs", 2, "--seed", 11, "--autolab")
    return {"cls": cls, "out": out, "p": p, "seconds": time.monotonic() - t}


def gradebook(out: Path) -> dict:
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    return {r["student"]: r for r in rows}


def test_batch_runs_and_prints_a_summary(batch):
    p = batch["p"]
    assert p.returncode == 0, p.stdout + p.stderr
    assert "seed 11" in p.stdout and "WARNING" in p.stdout and "WITHOUT a sandbox" in p.stdout
    assert f"[{len(GRADED)}/{len(GRADED)}]" in p.stdout          # progress, plain lines (no tty)
    assert "s per student with JOBS=2" in p.stdout
    for name in REFUSED:
        assert f"{name}: REFUSED" in p.stdout


def test_gradebook_rows(batch):
    rows = gradebook(batch["out"])
    assert set(rows) == set(REFUSED) | {"'@eve"} | (set(GRADED) - {"@eve"})
    assert list(rows["alice"]) == ["student", "maps", "threshold", "total", "max", "notes"]
    full = {"maps": 14, "threshold": 21}
    assert rows["alice"]["maps"] == str(full["maps"]) and rows["alice"]["threshold"] == "21"
    assert rows["alice"]["total"] == "35" == rows["alice"]["max"]
    assert (rows["bob"]["maps"], rows["bob"]["threshold"]) == ("14", "0")
    assert "threshold: not submitted" in rows["bob"]["notes"]
    assert (rows["carol"]["maps"], rows["carol"]["threshold"]) == ("0", "21")
    assert rows["Ève_O_Brien_late"]["maps"] == "14"
    assert rows["empty"]["total"] == "0" and rows["'@eve"]["total"] == "0"
    assert "no lab source found" in rows["empty"]["notes"]
    assert "maps: compile error" in rows["broken"]["notes"] and rows["broken"]["total"] == "0"
    assert "not a C source file" in rows["notc"]["notes"]
    for name, why in REFUSED.items():
        assert rows[name]["total"] == "0" and rows[name]["max"] == "35", name
        assert why in rows[name]["notes"], (name, rows[name]["notes"])
    for r in rows.values():
        assert "UNSAFE" in r["notes"]


def test_nothing_escaped(batch):
    assert not list(batch["cls"].parent.rglob("evil.c"))
    assert not Path("/tmp/memlab-evil.c").exists()
    for f in (batch["out"] / ".work").rglob("*"):
        assert not f.is_symlink()


def test_results_json_per_student(batch):
    out = batch["out"]
    for name in list(REFUSED) + GRADED:
        doc = json.loads((out / name / "results.json").read_text())
        assert validate(doc) == [], name
        b = doc["extra_data"]["batch"]
        assert b["complete"] is True and b["unsafe"] is True and doc["extra_data"]["unsafe"] is True
        assert doc["extra_data"]["warnings"]
        assert len(doc["tests"]) == 22, name                  # 8 maps checks + 14 threshold
        assert b["seed"] == student_seed(11, name) and b["batch_seed"] == 11
        for lab in ("maps", "threshold"):
            assert (out / name / f"{lab}.log").is_file()
    alice = json.loads((out / "alice" / "results.json").read_text())
    assert alice["score"] == 35 and all(t["status"] == "passed" for t in alice["tests"])
    assert all(t["extra_data"]["verdict"] == "ok" and "kind" not in t["extra_data"]
               for t in alice["tests"])                        # graded labs are never left "pending"
    assert len(alice["extra_data"]["batch"]["digest"]) == 64
    assert "memlab" in (out / "alice" / "maps.log").read_text()
    broken = (out / "broken" / "maps.log").read_text()
    assert "== build ==" in broken and "error" in broken
    said = {t["output"] for t in json.loads((out / "broken" / "results.json").read_text())["tests"]
            if t["extra_data"]["lab"] == "maps"}
    assert said and all("maps.c:1:" in t and "error:" in t and "cc -std" not in t for t in said), said
    bomb = json.loads((out / "bomb" / "results.json").read_text())
    assert "refused" in bomb["output"] and "archive bomb" in bomb["output"]


def test_junit_xml(batch):
    root = ET.parse(batch["out"] / "junit.xml").getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert len(suites) == len(REFUSED) + len(GRADED)
    assert int(root.get("tests")) == 22 * len(suites)
    alice = suites["alice"]
    assert alice.get("tests") == "22" and alice.get("failures") == "0"
    bob = suites["bob"]
    assert int(bob.get("failures")) == 14                        # threshold not submitted
    f = bob.find("testcase[@classname='bob.threshold']/failure")
    assert "not submitted" in f.get("message")
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in suites.values())


def test_autolab_lines(batch):
    lines = [ln for ln in batch["p"].stdout.splitlines() if '{"scores"' in ln]
    assert len(lines) == len(REFUSED) + len(GRADED)
    alice = next(ln for ln in lines if ln.startswith("alice: "))
    assert json.loads(alice.split(": ", 1)[1]) == {"scores": {"maps": 14.0, "threshold": 21.0}}
    saved = json.loads((batch["out"] / "alice" / "autolab.json").read_text())
    assert saved["scores"]["maps"] == 14


def test_resume_skips_everything_then_force_regrades_one(batch):
    out = batch["out"]
    before = json.loads((out / "alice" / "results.json").read_text())
    rows_before = gradebook(out)
    p = grader("batch", batch["cls"], out, "--labs", LABS, "--unsafe", "--jobs", 2)
    assert p.returncode == 0, p.stderr
    assert f"{len(REFUSED) + len(GRADED)} students already graded by an earlier run are kept" in p.stdout
    assert "seed 11 (from batch.json" in p.stdout
    again = json.loads((out / "alice" / "results.json").read_text())
    assert again == before
    assert gradebook(out) == rows_before
    p = grader("batch", batch["cls"], out, "--labs", LABS, "--unsafe", "--force", "--only", "alice")
    assert p.returncode == 0, p.stderr
    forced = json.loads((out / "alice" / "results.json").read_text())
    assert forced["extra_data"]["batch"]["run"] != before["extra_data"]["batch"]["run"]
    assert forced["extra_data"]["batch"]["seed"] == before["extra_data"]["batch"]["seed"]
    assert forced["extra_data"]["labs"]["maps"]["params"] == before["extra_data"]["labs"]["maps"]["params"]
    assert "[1/1] alice: 35/35" in p.stdout


def test_a_changed_submission_is_regraded(tmp_path, session_build):
    cls = tmp_path / "class"
    (cls / "ann" / "maps").mkdir(parents=True)
    (cls / "ann" / "maps" / "maps.c").write_bytes(MAPS)
    (cls / "ben" / "maps").mkdir(parents=True)
    (cls / "ben" / "maps" / "maps.c").write_text("nope")
    out = tmp_path / "out"
    assert grader("batch", cls, out, "--labs", "maps", "--unsafe").returncode == 0
    (cls / "ben" / "maps" / "maps.c").write_bytes(MAPS)
    p = grader("batch", cls, out, "--labs", "maps", "--unsafe")
    assert "1 students already graded" in p.stdout and "[1/1] ben: 14/14" in p.stdout
    # another lab list is another grading: nobody is kept
    p = grader("batch", cls, out, "--labs", "maps threshold", "--unsafe", "--jobs", 2)
    assert "already graded" not in p.stdout and "[2/2]" in p.stdout


# ---- hidden checks ----------------------------------------------------------------

HIDDEN_CHECK = '''
[[check]]
name = "secret_quiet_exit"
title = "a hidden check: the quiet run exits cleanly"
points = 5
run = "again"
observed = "run.exit"
expect = "value == 0"
hidden = true
'''


def tree_copy(dst: Path, labs=("maps",)) -> Path:
    dst.mkdir(parents=True)
    for name in ("Makefile", "common", "deps"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    for lab in labs:
        shutil.copytree(ROOT / "labs" / lab, dst / "labs" / lab)
    return dst


def test_hidden_checks_are_graded_and_marked(tmp_path, session_build):
    tree = tree_copy(tmp_path / "tree")
    toml = tree / "labs" / "maps" / "lab.toml"
    toml.write_text(toml.read_text() + HIDDEN_CHECK)
    cls = tmp_path / "class"
    (cls / "ann" / "maps").mkdir(parents=True)
    (cls / "ann" / "maps" / "maps.c").write_bytes(MAPS)
    out = tmp_path / "out"
    p = subprocess.run([PY, "-m", "grader", "--root", tree, "batch", cls, out, "--labs", "maps",
                        "--unsafe"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((out / "ann" / "results.json").read_text())
    assert validate(doc) == []
    hidden = [t for t in doc["tests"] if t["visibility"] == "hidden"]
    assert len(hidden) == 1 and hidden[0]["extra_data"]["check"] == "secret_quiet_exit"
    assert hidden[0]["status"] == "passed" and hidden[0]["score"] == 5
    assert doc["score"] == 19 and doc["extra_data"]["max_score"] == 19
    assert all(t["visibility"] == "visible" for t in doc["tests"] if t is not hidden[0])
    # the student's text counts visible points only; the instructor's files show it all
    assert "14/14 points on the visible checks" in doc["output"] and "19" not in doc["output"]
    assert gradebook(out)["ann"]["total"] == "19"
    junit = (out / "junit.xml").read_text()
    assert "secret_quiet_exit" in junit and "[hidden]" in junit
    assert "secret_quiet_exit" in (out / "ann" / "maps.log").read_text()


# ---- failures: a hang, an interruption, bad input ----------------------------------------

def test_a_hanging_student_costs_only_their_grade(tmp_path, session_build):
    cls = tmp_path / "class"
    (cls / "ann" / "maps").mkdir(parents=True)
    (cls / "ann" / "maps" / "maps.c").write_bytes(MAPS)
    hang = MAPS.replace(b'ml_init("maps", argc, argv);', b'ml_init("maps", argc, argv); for (;;) pause();')
    assert hang != MAPS
    (cls / "hal" / "maps").mkdir(parents=True)
    (cls / "hal" / "maps" / "maps.c").write_bytes(hang)
    out = tmp_path / "out"
    p = grader("batch", cls, out, "--labs", "maps", "--unsafe", "--jobs", 2, "--student-timeout", 8)
    assert p.returncode == 0, p.stderr
    rows = gradebook(out)
    assert rows["ann"]["total"] == "14"
    assert rows["hal"]["total"] == "0" and "time limit" in rows["hal"]["notes"]
    doc = json.loads((out / "hal" / "results.json").read_text())
    assert validate(doc) == []
    assert doc["extra_data"]["batch"]["error"] and doc["extra_data"]["batch"]["complete"] is False
    assert all(t["extra_data"]["verdict"] == "error" for t in doc["tests"])
    assert "1 could not be graded" in p.stdout
    assert "failures 1]" in p.stdout                         # no tty: plain lines with the counts
    # a failed student is graded again by the next run, a finished one is not
    p = grader("batch", cls, out, "--labs", "maps", "--unsafe", "--student-timeout", 8)
    assert "1 students already graded" in p.stdout and "[1/1] hal" in p.stdout


def _default_sigint():
    # as at a terminal: a test run started in the background (`cmd &` in a script, as CI
    # may) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _driver(cls, out, *extra):
    return subprocess.Popen([PY, "-m", "grader", "batch", str(cls), str(out), "--labs", "maps",
                             "--unsafe", "--jobs", "1", *map(str, extra)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _wait_rows(out: Path, n: int, proc, limit=120):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if len(gradebook(out)) >= n:
                return
        except (OSError, csv.Error):
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("no result in time")


def _workers_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"submission" in cmd and b"--parent" in cmd and cmd[cmd.index(b"--parent") + 1] == str(pid).encode():
                found.append(int(entry))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_batch_keeps_results_and_resumes(tmp_path, session_build, sig):
    cls = tmp_path / "class"
    names = [f"s{i}" for i in range(1, 11)]      # enough that the signal lands mid-batch
    for n in names:
        (cls / n / "maps").mkdir(parents=True)
        (cls / n / "maps" / "maps.c").write_bytes(MAPS)
    out = tmp_path / "out"
    proc = _driver(cls, out, "--seed", 3)
    _wait_rows(out, 1, proc)
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "interrupted" in stdout and "run the same command again" in stdout
    time.sleep(1.0)
    assert _workers_of(proc.pid) == []                     # no worker outlives the driver
    rows = gradebook(out)
    assert 1 <= len(rows) < len(names)
    done = {n: json.loads((out / n / "results.json").read_text()) for n in rows}
    for doc in done.values():
        assert validate(doc) == [] and doc["score"] == 14
    p = grader("batch", cls, out, "--labs", "maps", "--unsafe")
    assert p.returncode == 0, p.stderr
    assert f"{len(rows)} students already graded" in p.stdout
    assert len(gradebook(out)) == len(names) and all(r["total"] == "14" for r in gradebook(out).values())
    for n, doc in done.items():                             # kept, not regraded
        assert json.loads((out / n / "results.json").read_text()) == doc


def test_bad_input_is_named(tmp_path):
    p = grader("batch", tmp_path / "nope", tmp_path / "out", "--unsafe")
    assert p.returncode == 2 and "does not exist" in p.stderr
    (tmp_path / "class").mkdir()
    p = grader("batch", tmp_path / "class", tmp_path / "class" / "out", "--unsafe")
    assert p.returncode == 2 and "separate folders" in p.stderr
    p = grader("batch", tmp_path / "class", tmp_path / "out", "--unsafe")
    assert p.returncode == 2 and "holds no entry" in p.stderr
    p = grader("batch", tmp_path / "class", tmp_path / "out", "--unsafe", "--labs", "nosuchlab")
    assert p.returncode == 2 and "no such lab" in p.stderr
    p = grader("batch", tmp_path / "class", tmp_path / "out", "--unsafe", "--jobs", 0)
    assert p.returncode == 2 and "JOBS" in p.stderr


@pytest.mark.parametrize("how", ["missing", "unavailable"])
def test_without_a_sandbox_batch_refuses_unless_unsafe(tmp_path, monkeypatch, how):
    """No grader/sandbox.py, or one that cannot run here: refused with its reason."""
    import types
    import grader
    from grader import batch, spec
    if how == "missing":
        monkeypatch.delattr(grader, "sandbox", raising=False)
        monkeypatch.setitem(sys.modules, "grader.sandbox", None)
    else:
        fake = types.SimpleNamespace(available=lambda: (False, "bwrap is not installed",
                                                        "apt-get install bubblewrap"))
        monkeypatch.setattr(grader, "sandbox", fake, raising=False)
        monkeypatch.setitem(sys.modules, "grader.sandbox", fake)
    (tmp_path / "class" / "ann").mkdir(parents=True)
    labs = [spec.load(ROOT / "labs" / "maps")]
    with pytest.raises(batch.BatchError) as e:
        batch.run_batch(ROOT, labs, tmp_path / "class", tmp_path / "out", batch.Options())
    assert "UNSAFE=1" in str(e.value)
    assert ("no sandbox" if how == "missing" else "bwrap is not installed") in str(e.value)
    assert not (tmp_path / "out").exists()


def _sandbox_ok() -> bool:
    try:
        from grader import sandbox
    except ImportError:
        return False
    return sandbox.available()[0]


@contextlib.contextmanager
def slot0_held():
    """Hold sandbox slot 0's lock as "another grader" would (if someone else holds it
    already, it is busy all the same)."""
    import fcntl
    from grader import sandbox
    lockdir = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
    fd = os.open(f"{lockdir}/memlab-sandbox-{sandbox.UID_BASE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def test_sandboxed_batch_moves_off_a_busy_slot(tmp_path, session_build):
    """Graded in the sandbox (no --unsafe); slot 0's uid is taken by "another grader"
    (this test holds its lock), so the driver moves that worker to the next slot."""
    if not _sandbox_ok():
        pytest.skip("no usable sandbox here (grader/sandbox.py)")
    cls = tmp_path / "class"
    (cls / "ann" / "maps").mkdir(parents=True)
    (cls / "ann" / "maps" / "maps.c").write_bytes(MAPS)
    with slot0_held():
        proc = subprocess.Popen([PY, "-m", "grader", "batch", str(cls), str(tmp_path / "out"),
                                 "--labs", "maps", "--jobs", "1"], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = ""
        for line in proc.stdout:
            first += line
            if "in use by another grader" in line or line.startswith("[1/1]"):
                break
    rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, first + rest + err
    assert "sandbox slot 0 is in use by another grader: using slot 1" in first
    doc = json.loads((tmp_path / "out" / "ann" / "results.json").read_text())
    b = doc["extra_data"]["batch"]
    assert b["unsafe"] is False and "unsafe" not in doc["extra_data"]
    assert b["slot"] >= 1 and b["sandbox"]["sandbox"] is True
    assert doc["score"] == 14, doc["output"]


def test_single_sandboxed_submission_takes_the_first_free_slot(tmp_path, session_build):
    """`grader submission` without --slot (by hand, the Gradescope autograder) must not fail
    because another grader holds slot 0: it takes the next free one."""
    if not _sandbox_ok():
        pytest.skip("no usable sandbox here (grader/sandbox.py)")
    (tmp_path / "ann" / "maps").mkdir(parents=True)
    (tmp_path / "ann" / "maps" / "maps.c").write_bytes(MAPS)
    with slot0_held():
        p = grader("submission", "--src", tmp_path / "ann", "--out", tmp_path / "res",
                   "--labs", "maps", "--seed", 3)
    assert p.returncode == 0, p.stdout + p.stderr
    b = json.loads((tmp_path / "res" / "results.json").read_text())["extra_data"]["batch"]
    assert b["slot"] >= 1 and b["sandbox"]["slot"] == b["slot"] and b["unsafe"] is False


def test_make_batch_needs_its_folders():
    p = subprocess.run(["make", "-s", "-C", str(ROOT), "batch"], capture_output=True, text=True)
    assert p.returncode != 0 and "SUBMISSIONS=" in p.stderr
    p = subprocess.run(["make", "-s", "-C", str(ROOT), "batch", "SUBMISSIONS=x"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "OUT=" in p.stderr


# ---- one student, for Autolab ----------------------------------------------------------

def test_single_submission_prints_the_autolab_line(tmp_path, session_build):
    a = tgz(tmp_path / "ann.tar.gz", [("labs/maps/maps.c", MAPS)])
    p = grader("submission", "--src", a, "--out", tmp_path / "res", "--labs", LABS,
               "--unsafe", "--autolab", "--seed", 4)
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert json.loads(last) == {"scores": {"maps": 14.0, "threshold": 0.0}}
    doc = json.loads((tmp_path / "res" / "results.json").read_text())
    assert validate(doc) == [] and doc["extra_data"]["seed"] == 4
    assert autolab_line(doc) == last
    q = grader("submission", "--src", a, "--out", tmp_path / "res2", "--labs", "maps",
               "--unsafe", "--autolab", "--quiet")
    assert q.stdout.strip().count("\n") == 0 and json.loads(q.stdout)["scores"]["maps"] == 14


# ---- what makes a batch fast: workers on their own CPUs, probes and bytecode once ----

def test_cpu_shares():
    from grader.batch import cpu_shares
    assert cpu_shares(1, [0, 1]) == []                       # one job: every CPU
    assert cpu_shares(2, [0, 1]) == [[0], [1]]
    assert cpu_shares(2, [3, 1, 5, 4, 2]) == [[1, 2, 3], [4, 5]]
    assert cpu_shares(3, [0, 1]) == []                       # more jobs than CPUs: no pinning
    assert cpu_shares(4, list(range(8))) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_worker_command_line(monkeypatch, tmp_path):
    """A worker is told its CPUs, where the driver's probes are, and (sandboxed) that
    the sandbox was tried; its bytecode goes to the batch's own cache."""
    from grader import batch as b
    seen = {}

    class FakeProc:
        pid = os.getpid()

    def fake_popen(argv, **kw):
        seen["argv"], seen["env"] = argv, kw["env"]
        return FakeProc()
    monkeypatch.setattr(b.subprocess, "Popen", fake_popen)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    st = b.Student(None, None, 7, tmp_path / "work", tmp_path / "out")
    (tmp_path / "work").mkdir()
    w = b._start(ROOT, [], st, 0, b.Options(jobs=2), {}, tmp_path / "cb", 60.0, [1],
                 tmp_path / "machine.json", tmp_path / "pyc")
    argv = seen["argv"]
    assert argv[argv.index("--cpus") + 1] == "1"
    assert argv[argv.index("--machine") + 1] == str(tmp_path / "machine.json")
    assert "--sandbox-checked" in argv
    assert seen["env"]["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pyc")
    assert "PYTHONDONTWRITEBYTECODE" not in seen["env"]
    assert w.cpus == [1] and w.pidfd is not None
    os.close(w.pidfd)
    b._start(ROOT, [], st, 0, b.Options(jobs=1, unsafe=True), {}, tmp_path / "cb", 60.0)
    assert "--cpus" not in seen["argv"] and "--sandbox-checked" not in seen["argv"]
    assert "PYTHONPYCACHEPREFIX" not in seen["env"] or seen["env"]["PYTHONPYCACHEPREFIX"] != str(tmp_path / "pyc")


def test_a_worker_keeps_to_the_cpus_it_is_given(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    code = ("import os, sys; from grader import cli\n"
            "rc = cli.main(['submission', '--cpus', sys.argv[1], '--src', sys.argv[2], '--out', sys.argv[3],"
            " '--labs', 'maps', '--unsafe', '--quiet'])\n"
            "print(rc, sorted(os.sched_getaffinity(0)))\n")
    p = subprocess.run([PY, "-c", code, str(cpu), str(tmp_path / "none"), str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.stdout.split("\n")[-2] == f"2 [{cpu}]", p.stdout + p.stderr     # no such submission
    assert "no such submission" in p.stderr


def test_the_driver_probes_once_for_its_workers(batch):
    out = batch["out"]
    snap = json.loads((out / ".work" / ".machine.json").read_text())
    assert snap["facts"]["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert "strace" in snap["features"] and "setarch" in snap["features"]   # maps needs setarch
    pycs = [p for d in (ROOT / "build" / ".pycache", out / ".work" / ".pycache")
            for p in d.rglob("grader/batch.*.pyc")]
    assert pycs, "the grader's bytecode was not compiled for the workers"


def test_precompile(tmp_path, monkeypatch):
    from grader.batch import precompile
    assert precompile(tmp_path / "pyc") == tmp_path / "pyc"
    names = {p.name.split(".")[0] for p in (tmp_path / "pyc").rglob("*.pyc") if p.parent.name == "grader"}
    assert {"batch", "grading", "sandbox", "runner", "cli"} <= names
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    assert precompile(tmp_path / "pyc2") is None
