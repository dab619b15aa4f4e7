"""`make submit`: pack the lab files a student changed into submission.tar.gz.

    make submit                              in the student handout (dist/handout/)
    python3 -m grader submit [--out FILE]

Only the labs/<lab>/<lab>.c files that differ from the handout as distributed
are packed, each under its own path (labs/<lab>/<lab>.c): that is what the
Gradescope autograder (grader/gradescope.py) and batch grading accept. "As
distributed" is the manifest `make handout` writes, .memlab/handout.json (sha256
of every lab file; grader/handout.py). The course tree has no manifest: there,
submit says that it is for the student handout and fails.

Every packed file is compiled with the course Makefile into a temporary build
directory first; one that does not compile is packed anyway, with a warning
(it would score nothing).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .build import BuildResult, build_lab
from .handout import MANIFEST
from .results import replacing

ARCHIVE = "submission.tar.gz"


class SubmitError(Exception):
    pass


@dataclass
class Plan:
    changed: list[str] = field(default_factory=list)      # lab names, in order
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)      # in the manifest, file gone
    paths: dict[str, str] = field(default_factory=dict)   # lab -> labs/<lab>/<lab>.c


def load_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise SubmitError(
            f"`make submit` is for the student handout: there it packs the lab files you "
            f"changed. {root} has no {MANIFEST.as_posix()} (written by `make handout`), so it "
            "is not a handout; it looks like the course tree itself. Make the handout with "
            "`make handout` and run `make submit` in dist/handout/, or just hand in "
            "labs/<lab>/<lab>.c.")
    try:
        doc = json.loads(path.read_text())
        labs = doc["labs"]
        for lab, entry in labs.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and isinstance(entry.get("sha256"), str)):
                raise ValueError(f"bad entry for lab '{lab}'")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SubmitError(f"{path}: not a readable handout manifest ({e}); "
                          "ask for a fresh copy of the handout") from None
    return doc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan(root: Path, manifest: dict) -> Plan:
    """Which lab files differ from the handout as distributed."""
    p = Plan()
    for lab, entry in sorted(manifest["labs"].items()):
        rel = entry["path"]
        if rel != f"labs/{lab}/{lab}.c":            # never pack anything else
            raise SubmitError(f"{MANIFEST.as_posix()}: unexpected path {rel!r} for lab '{lab}'")
        p.paths[lab] = rel
        src = Path(root) / rel
        if not src.is_file():
            p.missing.append(lab)
        elif sha256(src) != entry["sha256"]:
            p.changed.append(lab)
        else:
            p.unchanged.append(lab)
    return p


def compile_labs(root: Path, labs: list[str]) -> dict[str, BuildResult]:
    """Compile each lab with the course Makefile into a temporary build directory."""
    root = Path(root)
    results: dict[str, BuildResult] = {}
    if not labs:
        return results
    with tempfile.TemporaryDirectory(prefix="memlab-submit-") as tmp:
        build = Path(tmp) / "build"
        build.mkdir()
        # the dependency stamps of the real build: no second package check
        for stamp in (root / "build").glob(".deps-*"):
            shutil.copy2(stamp, build / stamp.name)
        for lab in labs:
            results[lab] = build_lab(root, lab, build)
    return results


def error_excerpt(log: str, limit: int = 6) -> list[str]:
    lines = [ln.rstrip() for ln in log.splitlines() if ln.strip() and not ln.startswith("make")]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines[-limit:])[:limit]


def pack(root: Path, rels: list[str], out: Path) -> None:
    """Write out (tar.gz) holding root/rel as rel for each rel, atomically."""
    with replacing(out) as (fd, _), os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        now = int(time.time())
        for rel in rels:
            data = (Path(root) / rel).read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))


def submit(root: Path, out: Path, stream=None) -> int:
    """Pack the changed lab files of the handout at root into out; 0 when packed."""
    root = Path(root).resolve()

    def say(text: str = ""):
        print(text, file=stream or sys.stdout, flush=True)

    try:
        manifest = load_manifest(root)
        p = plan(root, manifest)
    except SubmitError as e:
        print(f"memlab submit: {e}", file=sys.stderr)
        return 2
    shown = os.path.relpath(out) if Path(out).is_absolute() and \
        Path(out).resolve().is_relative_to(Path.cwd()) else str(out)
    for lab in p.missing:
        say(f"memlab submit: warning: {p.paths[lab]} is missing; lab '{lab}' is not submitted")
    if not p.changed:
        say("memlab submit: nothing to submit: every lab file is as it was handed out "
            f"({', '.join(p.unchanged) or 'no labs'}). Edit labs/<lab>/<lab>.c first.")
        if Path(out).exists():
            say(f"  ({shown} is from an earlier `make submit`; it was left as it is)")
        return 1

    say(f"memlab submit: compiling {len(p.changed)} changed lab file"
        f"{'s' if len(p.changed) != 1 else ''} ...")
    builds = compile_labs(root, p.changed)
    rels = [p.paths[lab] for lab in p.changed]
    pack(root, rels, Path(out))

    say(f"memlab submit: packed {len(rels)} file{'s' if len(rels) != 1 else ''} into {shown}:")
    width = max(len(r) for r in rels)
    for lab in p.changed:
        b = builds.get(lab)
        state = "compiles" if b and b.ok else "DOES NOT COMPILE"
        size = (root / p.paths[lab]).stat().st_size
        say(f"  {p.paths[lab]:<{width}}  {size:>7} bytes  {state}")
    broken = [lab for lab in p.changed if not builds[lab].ok]
    for lab in broken:
        say()
        say(f"warning: {p.paths[lab]} does not compile. It is packed anyway, but as it is "
            f"lab '{lab}' would score 0. The compiler said:")
        for ln in error_excerpt(builds[lab].log):
            say(f"    {ln}")
        say(f"  (see all of it with: make lab-{lab})")
    if p.unchanged:
        say()
        say(f"not packed (unchanged from the handout): {', '.join(p.unchanged)}")
    say()
    say(f"Hand in {shown} (Gradescope: upload it as it is; the labs/<lab>/<lab>.c files "
        "inside it may also be uploaded one by one).")
    return 0


def cmd_submit(args) -> int:
    return submit(Path(args.root), Path(args.out) if args.out else Path(args.root) / ARCHIVE)


def register(sub) -> None:
    s = sub.add_parser("submit", help="(student handout) pack the lab files you changed "
                       f"into {ARCHIVE}")
    s.add_argument("--out", help=f"the archive to write (default: {ARCHIVE} at the top of the tree)")
    s.set_defaults(func=cmd_submit)

