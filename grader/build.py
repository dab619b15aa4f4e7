"""Compile a lab with the course's own Makefile, common/ and flags."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUILD_TIMEOUT = 120


@dataclass
class BuildResult:
    ok: bool
    binary: Path
    log: str


_DIAGNOSTIC = re.compile(r":\d+(?::\d+)?: (?:fatal )?error: ")
_COMMAND = re.compile(r"^\s*(?:\S*/)?(?:cc|gcc|g\+\+|clang|ar|ld)(?:-\d+)?\s")


def first_error(log: str, limit: int = 300) -> str:
    """The line of a compilation's output that says best why it failed: the grader's own
    reason (a line starting "error: ": stopped at a limit, no such file), else the
    compiler's first error about a source line, else the linker's first undefined reference, else
    the first other line saying error (never a command line make echoed, which may hold
    'error' in a file or folder name), else make's own complaint, else the last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    said = [ln for ln in lines if not _COMMAND.match(ln)]
    for pick in (lambda ln: ln.startswith("error: "),
                 lambda ln: _DIAGNOSTIC.search(ln),
                 lambda ln: "undefined reference to" in ln,
                 lambda ln: re.search(r"\berror\b", ln, re.I) and not ln.startswith("make"),
                 lambda ln: ln.startswith("make") and "***" in ln):
        found = next((ln for ln in said if pick(ln)), None)
        if found:
            break
    else:
        found = lines[-1] if lines else "(the compiler said nothing)"
    return found if len(found) <= limit else found[:limit - 3] + "..."


def library_files(build_dir: Path) -> list[Path]:
    """What a build folder holds of the course's library, once built: libmemlab.a, the
    common/ objects, the dependency stamps and the record of the flags it was compiled
    with (copied or linked into another build folder, make finds the library up to date
    there)."""
    build_dir = Path(build_dir)
    flags = build_dir / "common" / ".flags"
    return [build_dir / "libmemlab.a", *build_dir.glob(".deps-*"), *(build_dir / "common").glob("*.o"),
            *([flags] if flags.exists() else [])]


def make_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["LC_ALL"] = "C"
    return env


def build_lab(root: Path, lab: str, build_dir: Path | None = None,
              labs_src: Path | None = None, sandbox=None) -> BuildResult:
    """make <build>/labs/<lab>/<lab> in root; the source may come from labs_src.
    With a sandbox (grader/sandbox.py), the compilation runs in it."""
    if sandbox is not None and getattr(sandbox, "active", False):
        return sandbox.build(root, lab, build_dir, labs_src)
    build_dir = Path(build_dir or root / "build").resolve()
    target = build_dir / "labs" / lab / lab
    argv = ["make", "--no-print-directory", "-C", str(root), f"BUILD={build_dir}"]
    if labs_src is not None:
        argv.append(f"LABS_SRC={Path(labs_src).resolve()}")
    argv.append(str(target))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=make_env(), timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return BuildResult(False, target, f"compilation did not finish within {BUILD_TIMEOUT} s")
    except OSError as e:
        return BuildResult(False, target, f"cannot run make: {e.strerror}")
    log = p.stdout.decode("utf-8", "replace")
    return BuildResult(p.returncode == 0 and target.exists(), target, log)


def build_labs(root: Path, labs: list[str], build_dir: Path | None = None,
               labs_src: Path | None = None, sandbox=None, ldlibs: dict | None = None) -> dict:
    """build_lab() for several labs of one submission: {lab: BuildResult}. In a sandbox
    they are compiled together, one sandboxed make for all (Sandbox.build_many);
    ldlibs: {lab: its libraries} (spec.Lab.ldlibs), else make reads them itself."""
    if sandbox is not None and getattr(sandbox, "active", False) and hasattr(sandbox, "build_many"):
        return sandbox.build_many(root, labs, build_dir, labs_src, ldlibs=ldlibs)
    return {lab: build_lab(root, lab, build_dir, labs_src, sandbox=sandbox) for lab in labs}
