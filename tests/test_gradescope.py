"""`make gradescope` (grader/gradescope.py): the zip, and Gradescope simulated around it.

The zip is built from a copy of the course tree with one hidden check added to
cow, unpacked into tmp/autograder/source as Gradescope does, set up with
setup.sh (MEMLAB_SKIP_APT=1: the packages are already here), then
run_autograder grades submissions put in tmp/autograder/submission, with
MEMLAB_AUTOGRADER_ROOT pointing at tmp/autograder. Every results.json is
validated against Gradescope's schema (tests/test_results.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grader import spec  # noqa: E402
from grader.build import make_env  # noqa: E402
from grader.gradescope import (GradescopeError, _batch, autograde, build_zip,  # noqa: E402
                               collect, not_submitted_message, packages, seed_from_metadata)
from grader.handout import MANIFEST, strip_solutions  # noqa: E402
from grader.submit import pack  # noqa: E402
from test_results import validate  # noqa: E402

LABS = [lab.name for lab in spec.discover(ROOT / "labs")]
HIDDEN = '''
[[check]]
name = "secret_exit_status"
title = "the secret check: the run exits 0"
points = 2
run = "main"
observed = "run.exit"
expect = [0, 0]
hidden = true
'''
SLOW_LAB = "#include <unistd.h>\nint main(void)\n{\n    sleep(1);\n    return 0;\n}\n"


# ---- the zip ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the course tree, with a .git, and a hidden check in cow."""
    tree = tmp_path_factory.mktemp("course") / "memlab"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=shutil.ignore_patterns(
        "build", "dist", ".git", "__pycache__", ".pytest_cache", "*.pyc", "submission.tar.gz"))
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    toml = tree / "labs" / "cow" / "lab.toml"
    toml.write_text(toml.read_text() + HIDDEN)
    return tree


@pytest.fixture(scope="module")
def zip_path(course) -> Path:
    r = subprocess.run(["make", "--no-print-directory", "gradescope"], cwd=course,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=make_env(), timeout=300)
    assert r.returncode == 0, r.stdout
    assert "1 hidden check" in r.stdout, r.stdout
    path = course / "dist" / "gradescope-autograder.zip"
    assert path.is_file()
    return path


def test_zip_layout(zip_path):
    with zipfile.ZipFile(zip_path) as z:
        infos = {i.filename: i for i in z.infolist()}
        for script in ("setup.sh", "run_autograder"):
            info = infos[script]
            mode = info.external_attr >> 16
            assert info.create_system == 3 and stat.S_ISREG(mode), script
            assert mode & 0o111 == 0o111, f"{script} is not executable: {oct(mode)}"
            assert z.read(info).startswith(b"#!/bin/sh\n")
        top = {n.split("/", 1)[0] for n in infos}
        assert top == {"setup.sh", "run_autograder", "memlab"}
        tree = {n[len("memlab/"):] for n in infos if n.startswith("memlab/")}
        for gone in ("tests/", "bench/", ".git/", "build/", "dist/", ".ci/"):
            assert not any(n.startswith(gone) for n in tree), gone
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in tree)
        for must in ("Makefile", "deps/packages.txt", "deps/install", "deps/find-python",
                     "grader/__main__.py", "grader/gradescope.py", "common/memlab.h"):
            assert must in tree, must
        for lab in LABS:
            assert f"labs/{lab}/{lab}.c" in tree and f"labs/{lab}/lab.toml" in tree
        # the hidden check is in; the reference solutions are not (the handout's stubs)
        for lab in LABS:
            ref_text = (ROOT / f"labs/{lab}/{lab}.c").read_text()
            shipped = z.read(f"memlab/labs/{lab}/{lab}.c").decode()
            assert shipped == strip_solutions(ref_text, f"{lab}.c") != ref_text, lab
            assert "BEGIN SOLUTION" not in shipped
        assert b"secret_exit_status" in z.read("memlab/labs/cow/lab.toml")
        assert b"hidden = true" in z.read("memlab/labs/cow/lab.toml")
        assert (infos["memlab/deps/install"].external_attr >> 16) & 0o111
        config = json.loads(z.read("memlab/.memlab/gradescope.json"))
        assert config["labs"] == LABS
        setup = z.read("setup.sh").decode()
    # the packages of deps/packages.txt for build and grade, and no others
    listed = subprocess.run([str(ROOT / "deps" / "install"), "--list", "build", "grade"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert packages(ROOT) == listed
    line = next(ln for ln in setup.splitlines() if ln.startswith("PACKAGES="))
    assert line == f'PACKAGES="{" ".join(listed)}"'
    assert "python3-pytest" not in setup and "qemu" not in setup
    assert 'MEMLAB_SKIP_APT' in setup


def test_zip_for_some_labs_only(course, tmp_path):
    s = build_zip(course, tmp_path / "a.zip", ["faults", "cow"])
    assert s.labs == ["faults", "cow"] and s.hidden == 1
    with zipfile.ZipFile(s.path) as z:
        assert json.loads(z.read("memlab/.memlab/gradescope.json"))["labs"] == ["faults", "cow"]
    with pytest.raises(GradescopeError, match="no such lab: nope"):
        build_zip(course, tmp_path / "b.zip", ["nope"])


def test_zip_is_not_built_from_a_handout(tmp_path):
    (tmp_path / MANIFEST).parent.mkdir(parents=True)
    (tmp_path / MANIFEST).write_text("{}")
    with pytest.raises(GradescopeError, match="student handout"):
        build_zip(tmp_path, tmp_path / "dist" / "x.zip")


# ---- Gradescope, simulated --------------------------------------------------------------

def unzip(path: Path, dest: Path):
    """As Gradescope does: the files with their Unix modes."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


@pytest.fixture(scope="module")
def autograder(zip_path, tmp_path_factory):
    """tmp/autograder as Gradescope lays it out, after setup.sh: (root, setup output)."""
    ag = tmp_path_factory.mktemp("gs") / "autograder"
    (ag / "source").mkdir(parents=True)
    unzip(zip_path, ag / "source")
    env = dict(make_env(), MEMLAB_SKIP_APT="1")
    r = subprocess.run([str(ag / "source" / "setup.sh")], cwd=ag / "source", env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout
    shutil.copy2(ag / "source" / "run_autograder", ag / "run_autograder")   # as Gradescope does
    return ag, r.stdout


def put_submission(ag: Path, files: dict[str, bytes | str]) -> Path:
    sub = ag / "submission"
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir()
    for name, data in files.items():
        p = sub / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)
    return sub


def run_env(ag: Path, **extra) -> dict:
    return dict(make_env(), MEMLAB_AUTOGRADER_ROOT=str(ag), MEMLAB_SEED="7", **extra)


def run_autograder(ag: Path, files: dict, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    put_submission(ag, files)
    (ag / "results").mkdir(exist_ok=True)
    (ag / "results" / "results.json").write_text("stale, from another run\n")
    p = subprocess.run([str(ag / "run_autograder")], cwd="/", env=run_env(ag, **extra),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout
    doc = json.loads((ag / "results" / "results.json").read_text())
    assert validate(doc) == [], (validate(doc), p.stdout)
    return p, doc


def by_lab(doc: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t in doc["tests"]:
        out.setdefault(t["extra_data"]["lab"], []).append(t)
    return out


def ref(lab: str) -> str:
    return (ROOT / "labs" / lab / f"{lab}.c").read_text()


def test_setup_builds_the_labs_and_says_what_runs_here(autograder):
    ag, out = autograder
    tree = ag / "source" / "memlab"
    for lab in LABS:
        assert (tree / "build" / "labs" / lab / lab).is_file(), lab
    assert "memlab doctor" in out and "autograder ready" in out
    assert "apt-get" not in out


def test_reference_cow_and_faults(autograder):
    ag, _ = autograder
    p, doc = run_autograder(ag, {"labs/cow/cow.c": ref("cow"), "faults.c": ref("faults"),
                                 "notes.txt": "my notes\n"})
    labs = by_lab(doc)
    assert sorted(labs) == sorted(LABS)
    for lab in ("cow", "faults"):
        for t in labs[lab]:
            assert t["status"] == "passed" and t["score"] == t["max_score"], t
    for lab in set(LABS) - {"cow", "faults"}:
        for t in labs[lab]:
            assert t["status"] == "failed" and t["score"] == 0 and t["max_score"] > 0
            assert f"labs/{lab}/{lab}.c was not in your submission" in t["output"]
    assert doc["score"] == pytest.approx(sum(t["score"] for t in doc["tests"]))
    assert doc["score"] == pytest.approx(sum(t["max_score"] for t in labs["cow"] + labs["faults"]))
    assert doc["score"] > 0

    # the hidden check: graded, hidden; everything else visible
    secret = [t for t in doc["tests"] if t["extra_data"]["check"] == "secret_exit_status"]
    assert len(secret) == 1 and secret[0]["visibility"] == "hidden"
    assert secret[0]["status"] == "passed" and secret[0]["score"] == 2
    assert all(t["visibility"] == "visible" for t in doc["tests"] if t is not secret[0])
    assert doc["visibility"] == "visible" and doc["stdout_visibility"] == "hidden"
    assert "the secret check" not in p.stdout and "secret_exit_status" not in p.stdout
    assert "the secret check" not in doc["output"]

    assert "cow <- labs/cow/cow.c" in doc["output"] and "faults <- faults.c" in doc["output"]
    assert "notes.txt" in doc["output"]                     # said to be ignored
    assert "SEED=7" in doc["output"]
    assert doc["extra_data"]["seed"] == 7
    assert doc["extra_data"]["submission"]["graded"] == {"cow": "labs/cow/cow.c",
                                                         "faults": "faults.c"}


def test_empty_submission(autograder):
    ag, _ = autograder
    p, doc = run_autograder(ag, {})
    assert doc["score"] == 0
    assert len(doc["tests"]) == sum(len(spec.load(ROOT / "labs" / lab).checks) for lab in LABS) + 1
    assert all(t["status"] == "failed" and t["score"] == 0 for t in doc["tests"])
    assert "no lab file was found in your submission" in doc["output"]


def test_compile_error_in_an_uploaded_archive(autograder, tmp_path):
    ag, _ = autograder
    student = tmp_path / "student"
    (student / "labs" / "cow").mkdir(parents=True)
    (student / "labs" / "faults").mkdir(parents=True)
    (student / "labs" / "cow" / "cow.c").write_text(ref("cow"))
    (student / "labs" / "faults" / "faults.c").write_text(ref("faults") + "\nint broken(\n")
    pack(student, ["labs/cow/cow.c", "labs/faults/faults.c"], tmp_path / "submission.tar.gz")
    p, doc = run_autograder(ag, {"submission.tar.gz": (tmp_path / "submission.tar.gz").read_bytes()})
    labs = by_lab(doc)
    assert all(t["status"] == "passed" for t in labs["cow"])
    for t in labs["faults"]:
        assert t["status"] == "failed" and t["score"] == 0
        assert "did not compile" in t["output"] and "labs/faults/faults.c:" in t["output"]
    assert doc["extra_data"]["labs"]["faults"]["error"] == "compile error"
    assert "the compiler said" in doc["output"] and "error:" in doc["output"]
    assert "memlab-autograde-" not in json.dumps(doc)       # no temporary paths shown
    assert "cow <- submission.tar.gz:labs/cow/cow.c" in doc["output"]


def test_partial_results_are_written_as_it_goes(autograder):
    ag, _ = autograder
    put_submission(ag, {"cow.c": ref("cow"), "faults.c": SLOW_LAB})
    results = ag / "results" / "results.json"
    results.unlink(missing_ok=True)
    p = subprocess.Popen([str(ag / "run_autograder")], cwd="/", env=run_env(ag),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    seen = None
    try:
        deadline = time.monotonic() + 300
        while p.poll() is None and time.monotonic() < deadline:
            try:
                doc = json.loads(results.read_text())
            except (OSError, ValueError):
                doc = None          # not written yet (it is replaced whole, never half-written)
            if doc and doc["tests"]:
                labs = by_lab(doc)
                if labs["cow"][0]["status"] == "passed" and \
                        "stopped before" in labs["faults"][0]["output"]:
                    seen = doc
                    break
            time.sleep(0.05)
    finally:
        out, _ = p.communicate(timeout=600)
    assert seen is not None, out
    assert validate(seen) == []
    labs = by_lab(seen)
    assert all(t["status"] == "passed" for t in labs["cow"])
    for lab in LABS[LABS.index("faults"):]:
        assert all(t["status"] == "failed" and t["score"] == 0 and "not graded" in t["output"]
                   for t in labs[lab])
    final = json.loads(results.read_text())
    assert validate(final) == []
    assert all(t["status"] == "failed" for t in by_lab(final)["faults"]
               if t["extra_data"]["verdict"] != "skip")
    assert "stopped before" not in json.dumps(final)


def test_autolab_scores_line(autograder):
    ag, _ = autograder
    p, doc = run_autograder(ag, {"cow/cow.c": ref("cow")}, MEMLAB_AUTOLAB="1",
                            MEMLAB_AUTOGRADER_SANDBOX="0")
    assert doc["extra_data"].get("unsafe") is True          # said, when graded without
    last = p.stdout.rstrip("\n").splitlines()[-1]
    line = json.loads(last)
    assert list(line) == ["scores"]
    assert sorted(line["scores"]) == sorted(LABS)
    for lab, points in line["scores"].items():
        assert points == pytest.approx(doc["extra_data"]["labs"][lab]["score"])
    assert line["scores"]["cow"] > 0 and line["scores"]["faults"] == 0


def test_a_crash_of_the_grader_still_leaves_results(autograder):
    ag, _ = autograder
    toml = ag / "source" / "memlab" / "labs" / "maps" / "lab.toml"
    saved = toml.read_text()
    toml.write_text(saved + "\n[[[ not toml\n")
    try:
        p, doc = run_autograder(ag, {"cow.c": ref("cow")})
    finally:
        toml.write_text(saved)
    assert doc["score"] == 0
    assert "the autograder failed" in doc["output"] and "not with your submission" in doc["output"]
    assert "SpecError" in doc["output"] and "Traceback" in p.stdout


def test_python_that_cannot_start_still_leaves_results(autograder):
    ag, _ = autograder
    init = ag / "source" / "memlab" / "grader" / "__init__.py"
    saved = init.read_text()
    init.write_text(saved + "\nthis is not python(\n")
    try:
        p, doc = run_autograder(ag, {"cow.c": ref("cow")})
    finally:
        init.write_text(saved)
    assert doc["score"] == 0 and doc["tests"] == []
    assert "failed before it could grade anything" in doc["output"]


# ---- the submission as uploaded -------------------------------------------------------------

def test_collect_accepts_the_three_layouts_and_says_what_it_ignored(tmp_path):
    sub = put_submission(tmp_path, {"labs/cow/cow.c": "a", "faults/faults.c": "b", "maps.c": "c",
                                    "cow.c": "older copy", "README": "hi",
                                    "threshold.c": "not in this assignment"})
    c = collect(sub, ["cow", "faults", "maps"], tmp_path / "w", all_labs=LABS)
    assert c.origin == {"cow": "labs/cow/cow.c", "faults": "faults/faults.c", "maps": "maps.c"}
    assert c.files["cow"].read_text() == "a"
    assert any("also found, not graded: cow.c" in n for n in c.notes)
    assert "README" in c.ignored
    assert any(i.startswith("threshold.c (lab 'threshold' is not part") for i in c.ignored)


def test_collect_looks_inside_one_folder(tmp_path):
    sub = put_submission(tmp_path, {"handout/labs/cow/cow.c": "a", "__MACOSX/cow.c": "junk"})
    c = collect(sub, ["cow"], tmp_path / "w")
    assert c.origin == {"cow": "handout/labs/cow/cow.c"}


def test_collect_never_follows_a_symlink(tmp_path):
    sub = put_submission(tmp_path, {})
    (sub / "cow.c").symlink_to(ROOT / "labs" / "cow" / "cow.c")
    (sub / "labs").symlink_to(ROOT / "labs")
    c = collect(sub, ["cow", "faults"], tmp_path / "w")
    assert c.files == {}


def test_collect_unpacks_only_lab_files_from_archives(tmp_path):
    import io
    sub = put_submission(tmp_path, {})
    with tarfile.open(sub / "work.tar.gz", "w:gz") as tar:
        for name, data in (("labs/cow/cow.c", b"good"), ("../../faults.c", b"escape"),
                           ("/abs/maps.c", b"abs"), ("other.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("faults.c")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with zipfile.ZipFile(sub / "more.zip", "w") as z:
        z.writestr("maps/maps.c", "from zip")
    (sub / "broken.tgz").write_bytes(b"not an archive")
    c = collect(sub, ["cow", "faults", "maps"], tmp_path / "w")
    assert c.origin == {"cow": "work.tar.gz:labs/cow/cow.c", "maps": "more.zip:maps/maps.c"}
    assert c.files["cow"].read_bytes() == b"good"
    assert any("broken.tgz: cannot be unpacked" in n for n in c.notes)
    assert not (tmp_path / "faults.c").exists() and not (tmp_path.parent / "faults.c").exists()


def test_a_missing_submission_folder_is_said(tmp_path):
    c = collect(tmp_path / "nothing", ["cow"], tmp_path / "w")
    assert c.files == {} and "missing" in c.notes[0]


# ---- the two engines, in this process ------------------------------------------------------

@pytest.mark.skipif(not _batch(), reason="no `python3 -m grader submission` (grader/batch.py)")
def test_batch_engine_is_stopped_at_the_time_budget(tmp_path, capsys):
    sub = put_submission(tmp_path, {"faults.c": SLOW_LAB.replace("sleep(1)", "sleep(10)")})
    results = tmp_path / "results" / "results.json"
    t = time.monotonic()
    assert autograde(ROOT, sub, results, labs=["cgroup", "faults"], seed=1, deadline=10,
                     autolab=True, engine="batch") == 0
    assert time.monotonic() - t < 30                  # not the 40 s faults would take
    doc = json.loads(results.read_text())
    assert validate(doc) == []
    labs = by_lab(doc)
    assert all(not_submitted_message("cgroup") in t["output"] for t in labs["cgroup"])   # kept
    assert all(t["status"] == "failed" and t["score"] == 0 and
               "time budget (10 s) ran out" in t["output"] for t in labs["faults"])
    assert doc["score"] == 0 and "did not finish" in doc["output"]
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == \
        {"scores": {"cgroup": 0, "faults": 0}}


def test_here_engine_grades_and_keeps_to_the_time_budget(course, tmp_path, capsys):
    sub = put_submission(tmp_path, {"labs/cow/cow.c": ref("cow"), "faults.c": "int x(\n"})
    results = tmp_path / "results.json"
    assert autograde(course, sub, results, labs=["cow", "faults", "maps"], seed=1,
                     engine="here", autolab=True) == 0
    doc = json.loads(results.read_text())
    assert validate(doc) == []
    labs = by_lab(doc)
    assert all(t["status"] == "passed" for t in labs["cow"])
    secret = [t for t in labs["cow"] if t["visibility"] == "hidden"]
    assert [t["extra_data"]["check"] for t in secret] == ["secret_exit_status"]
    visible_cow = sum(t["score"] for t in labs["cow"] if t["visibility"] == "visible")
    assert f"cow: {visible_cow:g}/{visible_cow:g}" in doc["output"]
    assert "hidden checks are graded too" in doc["output"]
    out = capsys.readouterr().out
    assert "the secret check" not in out and "+ 1 hidden check: 2/2" in out
    scores = json.loads(out.splitlines()[-1])["scores"]
    assert scores["cow"] == doc["score"] == visible_cow + 2
    assert scores["faults"] == scores["maps"] == 0
    assert all("did not compile" in t["output"] and "labs/faults/faults.c:" in t["output"]
               for t in labs["faults"])
    assert all(not_submitted_message("maps") in t["output"] for t in labs["maps"])
    assert "the compiler said" in doc["output"] and "memlab-autograde-" not in json.dumps(doc)

    assert autograde(ROOT, sub, results, labs=["cow"], seed=1, deadline=0, engine="here") == 0
    doc = json.loads(results.read_text())
    assert validate(doc) == [] and doc["score"] == 0
    assert all("time budget" in t["output"] for t in doc["tests"])


def test_seed_from_metadata(tmp_path):
    meta = tmp_path / "submission_metadata.json"
    meta.write_text(json.dumps({"id": 123456789, "users": [{"name": "A"}]}))
    assert seed_from_metadata(meta) == 456789
    meta.write_text("{}")
    assert seed_from_metadata(meta) is None
    assert seed_from_metadata(tmp_path / "none.json") is None
