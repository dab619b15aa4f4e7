"""Shared fixtures: the project root, a session build of the reference labs, and
helpers that grade a lab from the reference tree or from any C source."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.build import make_env  # noqa: E402
from grader.grading import LabResult, grade_lab  # noqa: E402

LABS = [lab.name for lab in spec.discover(ROOT / "labs")]


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots a QEMU guest (tests/test_vm.py; MEMLAB_SKIP_VM=1 skips)")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def session_build(tmp_path_factory) -> Path:
    """The helper library and every reference lab, built once per session."""
    build = tmp_path_factory.mktemp("build")
    subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={build}", "build"], check=True,
                   env=make_env(), stdout=subprocess.DEVNULL)
    return build


@pytest.fixture
def fresh_build(session_build, tmp_path):
    """A build directory holding the already-built helper library, so that a test
    that compiles its own lab source does not rebuild common/."""
    def make(name: str = "build") -> Path:
        d = tmp_path / name
        d.mkdir()
        shutil.copytree(session_build / "common", d / "common")
        shutil.copy2(session_build / "libmemlab.a", d / "libmemlab.a")
        for stamp in session_build.glob(".deps-*"):
            shutil.copy2(stamp, d / stamp.name)
        return d
    return make


@pytest.fixture
def grade_reference(session_build):
    """Grade a reference lab: grade_reference("cow", seed=3) -> LabResult."""
    def run(lab: str, seed: int = 1) -> LabResult:
        return grade_lab(spec.load(ROOT / "labs" / lab), ROOT, seed, build_dir=session_build)
    return run


@pytest.fixture
def grade_source(fresh_build, tmp_path):
    """Grade a lab built from other C source (a cheat, a broken program, another
    correct solution): grade_source("cow", source_text_or_path, seed=3)."""
    counter = [0]

    def run(lab: str, source, seed: int = 1) -> LabResult:
        counter[0] += 1
        src_root = tmp_path / f"src{counter[0]}"
        (src_root / lab).mkdir(parents=True)
        text = Path(source).read_text() if isinstance(source, Path) else source
        (src_root / lab / f"{lab}.c").write_text(text)
        build = fresh_build(f"build{counter[0]}")
        return grade_lab(spec.load(ROOT / "labs" / lab), ROOT, seed, build_dir=build,
                         labs_src=src_root)
    return run


def verdicts(res: LabResult) -> dict:
    """{check name: status} of a graded lab."""
    return {v.check.name: v.status for v in res.verdicts}
