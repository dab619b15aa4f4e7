"""A class's submissions: find the entries, take each student's lab sources out safely.

    find_entries(folder)                  every entry of a submissions folder, one per student
    prepare(path, labs, work)             the entry's lab files into work/src/<lab>/<lab>.c
    load_prepared(work)                   what prepare() found, read back from work/submission.json
    student_id(name), csv_cell(text)      a name made safe for a folder, a text for a CSV cell

An entry is a directory, a .tar.gz / .tgz or a .zip; the student's name is the
entry's name without its extension. Only `<lab>/<lab>.c` or `labs/<lab>/<lab>.c`
(optionally under one top folder, as `zip -r alice.zip alice/` makes) is taken,
each at most LAB_FILE_MAX bytes; nothing else is ever written anywhere.

Archives are read member by member, by hand (never extractall): a member with an
absolute path or `..`, a symlink, a hard link, a device or anything else that is
not a regular file or a folder refuses the whole entry, and so do more than
MAX_MEMBERS members or more than MAX_BYTES of decompressed data (counted as it is
read, never taken from the archive's headers). A refused entry scores 0 with
the reason; a broken lab file (binary, too large, two candidates) scores 0 for
that lab only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

LAB_FILE_MAX = 1024 * 1024          # bytes of one lab source
MAX_MEMBERS = 2000                  # members (files, folders) of one entry
MAX_BYTES = 64 * 1024 * 1024        # decompressed bytes read from one archive, in all
ARCHIVES = {".tar.gz": "tar", ".tgz": "tar", ".zip": "zip"}
IGNORED_TOP = {"__MACOSX"}          # macOS's resource-fork folder in zips
RESERVED = {"gradebook.csv", "junit.xml", "batch.json", "summary.txt"}   # files of OUT
MANIFEST = "submission.json"
NAME_MAX = 80


class Refused(Exception):
    """The entry cannot be graded safely: 0 points, with this reason."""


# ---- names ----------------------------------------------------------------------

def split_name(filename: str) -> tuple[str, str]:
    """("alice", ".tar.gz") for alice.tar.gz; the kind comes from ARCHIVES."""
    low = filename.lower()
    for suffix in sorted(ARCHIVES, key=len, reverse=True):
        if low.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)], suffix
    return filename, ""


def student_id(name: str) -> str:
    """A folder name for a student: letters, digits and . _ - + @ only; not starting
    with a dot, _ or -; no '..'."""
    name = unicodedata.normalize("NFC", name)
    out = "".join(c if (c.isalnum() or c in "._-+@") else "_" for c in name)
    out = re.sub(r"\.{2,}", ".", re.sub(r"_+", "_", out))
    out = out.lstrip("._-").rstrip("_") or "student"      # no hidden folder, no option-like name
    out = out[:NAME_MAX]
    if out.lower() in RESERVED:
        out += "_"
    return out


def csv_cell(text: str) -> str:
    """A text for a CSV cell that a spreadsheet will not run as a formula."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    if text.lstrip()[:1] in ("=", "+", "-", "@", "|", "%"):
        return "'" + text
    return text


# ---- entries ----------------------------------------------------------------------

@dataclass
class Entry:
    path: Path
    name: str            # the entry's name without extension, as the student (or LMS) gave it
    student: str         # student_id(name), disambiguated: the folder in OUT, the CSV row
    kind: str            # "dir", "tar", "zip" or "other"
    problem: str = ""    # refused before anything is read (unsupported, two entries, ...)


def find_entries(folder: Path) -> list[Entry]:
    """Every entry of a submissions folder, sorted by student. Names starting with a
    dot are ignored (.DS_Store, editors' files). Two entries with the same student
    name (alice/ and alice.zip) are both refused: which one counts is the instructor's
    call. Two different names that become the same folder name get a short suffix."""
    folder = Path(folder)
    entries = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        name, suffix = split_name(p.name)
        if p.is_dir():
            kind, problem = "dir", ""
            name = p.name
        elif suffix and p.is_file():
            kind, problem = ARCHIVES[suffix], ""
        else:
            kind = "other"
            problem = ("not a submission: expected a folder, a .tar.gz, a .tgz or a .zip"
                       if p.exists() else "a broken symbolic link")
        entries.append(Entry(p, name, student_id(name), kind, problem))
    by_name: dict[str, list[Entry]] = {}
    for e in entries:
        by_name.setdefault(e.name, []).append(e)
    for same in by_name.values():
        if len(same) > 1:
            listed = ", ".join(e.path.name + ("/" if e.kind == "dir" else "") for e in same)
            for e in same:
                e.problem = (f"{len(same)} entries for student '{e.name}' ({listed}): "
                             "keep one of them and run again")
    by_id: dict[str, list[Entry]] = {}
    for e in entries:
        by_id.setdefault(e.student.lower(), []).append(e)
    for same in by_id.values():
        names = {e.name for e in same}
        if len(names) > 1:
            for e in same:
                e.student = f"{e.student[:NAME_MAX - 7]}~{hashlib.sha1(e.name.encode()).hexdigest()[:6]}"
    # the same name twice: both refused, but each needs its own folder in OUT
    by_id = {}
    for e in entries:
        by_id.setdefault(e.student.lower(), []).append(e)
    for same in by_id.values():
        if len(same) > 1:
            for e in same:
                ext = e.path.name[len(e.name):].lstrip(".") if e.kind != "dir" else "dir"
                e.student = f"{e.student}.{student_id(ext) if ext else e.kind}"
    taken: set[str] = set()
    for e in sorted(entries, key=lambda e: e.path.name):
        base, n = e.student, 1
        while e.student.lower() in taken:
            n += 1
            e.student = f"{base}~{n}"
        taken.add(e.student.lower())
    return sorted(entries, key=lambda e: (e.student.lower(), e.student))


# ---- what a submission holds --------------------------------------------------------

@dataclass
class Prepared:
    student: str
    entry: str                           # the entry's file name
    src: str                             # folder holding <lab>/<lab>.c for each submitted lab
    refused: str = ""                    # the whole entry is refused: why
    files: dict = field(default_factory=dict)      # lab -> path inside the submission
    sha256: dict = field(default_factory=dict)     # lab -> sha256 of the file taken
    problems: dict = field(default_factory=dict)   # lab -> why this lab's file cannot be graded
    notes: list = field(default_factory=list)      # harmless remarks (files ignored, ...)
    digest: str = ""

    @property
    def submitted(self) -> list[str]:
        return sorted(self.files)


def _member_parts(name: str) -> list[str]:
    """The components of a member's path; Refused for an absolute path or '..'."""
    shown = name if len(name) <= 120 else name[:117] + "..."
    if "\x00" in name:
        raise Refused(f"unsafe path in the archive: {shown!r} holds a NUL byte")
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise Refused(f"unsafe path in the archive: {shown!r} is absolute")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"unsafe path in the archive: {shown!r} goes up with '..'")
    return parts


def _lab_match(parts: list[str], labs: list[str]) -> tuple[str, int] | None:
    """(lab, rank) when parts name a lab source; rank 0 is the most direct layout:
    <lab>/<lab>.c, then labs/<lab>/<lab>.c, then either under one top folder."""
    if len(parts) < 2 or parts[0] in IGNORED_TOP:
        return None
    lab, filename, head = parts[-2], parts[-1], parts[:-2]
    if lab not in labs or filename != f"{lab}.c":
        return None
    if not head:
        return lab, 0
    if head == ["labs"]:
        return lab, 1
    if len(head) == 1:
        return lab, 2
    if len(head) == 2 and head[1] == "labs":
        return lab, 3
    return None


class _Budget:
    """Counts members and decompressed bytes of one entry; Refused past the limits."""

    def __init__(self, what: str):
        self.what = what
        self.members = 0
        self.bytes = 0

    def member(self):
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise Refused(f"{self.what} has more than {MAX_MEMBERS} members (an archive bomb?)")

    def add(self, n: int):
        self.bytes += n
        if self.bytes > MAX_BYTES:
            raise Refused(f"{self.what} decompresses to more than {MAX_BYTES // (1024 * 1024)} MiB "
                          "(an archive bomb?)")


class _CountingReader(io.RawIOBase):
    """A stream that charges every byte read to a budget (the decompressed tar stream)."""

    def __init__(self, inner, budget: _Budget):
        self.inner, self.budget = inner, budget

    def readable(self):
        return True

    def readinto(self, b):
        data = self.inner.read(len(b))
        self.budget.add(len(data))
        b[: len(data)] = data
        return len(data)


def _read_limited(f, budget: _Budget) -> bytes | None:
    """A member's content, or None when it is larger than LAB_FILE_MAX."""
    chunks, total = [], 0
    while True:
        data = f.read(65536)
        if not data:
            return b"".join(chunks)
        budget.add(len(data))
        total += len(data)
        if total > LAB_FILE_MAX:
            return None
        chunks.append(data)


def _scan_tar(path: Path, labs: list[str], budget: _Budget, found: list, seen: list):
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise Refused(f"cannot read {path.name}: {e.strerror}") from None
    with raw:
        stream = io.BufferedReader(_CountingReader(gzip.GzipFile(fileobj=raw, mode="rb"), budget))
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for m in tf:
                    budget.member()
                    parts = _member_parts(m.name)
                    shown = "/".join(parts) or m.name
                    if m.issym():
                        raise Refused(f"the archive holds a symbolic link: {shown} -> {m.linkname}")
                    if m.islnk():
                        raise Refused(f"the archive holds a hard link: {shown} -> {m.linkname}")
                    if m.isdir():
                        continue
                    if not m.isreg():
                        kind = ("a device" if m.ischr() or m.isblk() else
                                "a FIFO" if m.isfifo() else "a special file")
                        raise Refused(f"the archive holds {kind}: {shown}")
                    seen.append(shown)
                    hit = _lab_match(parts, labs)
                    if not hit:
                        continue
                    f = tf.extractfile(m)
                    data = _read_limited(f, budget) if f else b""
                    found.append((hit[0], hit[1], shown, data))
        except Refused:
            raise
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise Refused(f"corrupt or unreadable archive {path.name}: {_why(e)}") from None


def _scan_zip(path: Path, labs: list[str], budget: _Budget, found: list, seen: list):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise Refused(f"corrupt or unreadable archive {path.name}: {_why(e)}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise Refused(f"{path.name} has {len(infos)} members, more than {MAX_MEMBERS} "
                          "(an archive bomb?)")
        declared = sum(i.file_size for i in infos)
        if declared > MAX_BYTES:
            raise Refused(f"{path.name} declares {declared} bytes uncompressed, more than "
                          f"{MAX_BYTES // (1024 * 1024)} MiB (an archive bomb?)")
        wanted = []
        for info in infos:
            budget.member()
            parts = _member_parts(info.filename)
            shown = "/".join(parts) or info.filename
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise Refused(f"the archive holds a symbolic link: {shown}")
            if info.is_dir() or kind == stat.S_IFDIR:
                continue
            if kind not in (0, stat.S_IFREG):
                raise Refused(f"the archive holds a special file: {shown}")
            seen.append(shown)
            hit = _lab_match(parts, labs)
            if hit:
                wanted.append((hit, shown, info))
        for (lab, rank), shown, info in wanted:
            try:
                with zf.open(info) as f:
                    data = _read_limited(f, budget)
            except Refused:
                raise
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error,
                    NotImplementedError, RuntimeError) as e:
                raise Refused(f"corrupt or unreadable archive {path.name} ({shown}): {_why(e)}") from None
            found.append((lab, rank, shown, data))


def _scan_dir(path: Path, labs: list[str], budget: _Budget, found: list, seen: list):
    """A folder submission: walked without following links; a link or a special file
    anywhere in it refuses it, like in an archive."""
    for top, dirs, files in os.walk(path, followlinks=False):
        for name in sorted(dirs + files):
            budget.member()
            full = Path(top) / name
            rel = full.relative_to(path).as_posix()
            try:
                st = os.lstat(full)
            except OSError as e:
                raise Refused(f"cannot read {rel}: {e.strerror}") from None
            if stat.S_ISLNK(st.st_mode):
                raise Refused(f"the submission holds a symbolic link: {rel} -> {os.readlink(full)}")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"the submission holds a special file: {rel}")
            seen.append(rel)
            hit = _lab_match(rel.split("/"), labs)
            if not hit:
                continue
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as e:
                raise Refused(f"cannot read {rel}: {e.strerror}") from None
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise Refused(f"the submission holds a special file: {rel}")
                data = _read_limited(f, budget)
            found.append((hit[0], hit[1], rel, data))
        dirs.sort()


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data


def prepare(path: Path, labs: list[str], work: Path, *, student: str | None = None,
            kind: str | None = None, problem: str = "") -> Prepared:
    """Take the lab sources of one entry into work/src/<lab>/<lab>.c and describe them
    in work/submission.json. Never raises for anything the submission holds."""
    path, work = Path(path), Path(work)
    name, suffix = split_name(path.name)
    if kind is None:
        kind = "dir" if path.is_dir() else ARCHIVES.get(suffix, "other")
        if kind == "other" and not problem:
            problem = "not a submission: expected a folder, a .tar.gz, a .tgz or a .zip"
    src = work / "src"
    if src.is_symlink() or src.exists():
        shutil.rmtree(src) if src.is_dir() and not src.is_symlink() else src.unlink()
    prep = Prepared(student or student_id(name if kind != "dir" else path.name), path.name, str(src))
    found: list = []
    seen: list = []
    budget = _Budget(path.name)
    try:
        if problem:
            raise Refused(problem)
        scan = {"dir": _scan_dir, "tar": _scan_tar, "zip": _scan_zip}[kind]
        scan(path, labs, budget, found, seen)
    except Refused as e:
        prep.refused = str(e)
    except Exception as e:  # noqa: BLE001 - a submission must never stop the batch
        prep.refused = f"cannot read {path.name}: {type(e).__name__}: {_why(e)}"
    if not prep.refused:
        _choose(prep, found, labs)
        if not prep.files and not prep.problems:
            listed = ", ".join(seen[:8]) + (f", ... ({len(seen)} files)" if len(seen) > 8 else "")
            prep.notes.append("no lab source found (expected <lab>/<lab>.c or labs/<lab>/<lab>.c"
                              f" for {', '.join(labs)}); it holds: {listed or 'nothing'}")
    work.mkdir(parents=True, exist_ok=True)
    src.mkdir()
    for lab in list(prep.files):
        data = next(d for lb, _, shown, d in found if lb == lab and shown == prep.files[lab])
        (src / lab).mkdir()
        (src / lab / f"{lab}.c").write_bytes(data)
    prep.digest = digest(prep)
    save_prepared(prep, work)
    return prep


def _choose(prep: Prepared, found: list, labs: list[str]):
    for lab in labs:
        cands = sorted((rank, shown, data) for lb, rank, shown, data in found if lb == lab)
        if not cands:
            continue
        best = [c for c in cands if c[0] == cands[0][0]]
        if len(best) > 1:
            prep.problems[lab] = ("more than one candidate file: " + ", ".join(c[1] for c in best) +
                                  " (submit one)")
            continue
        rank, shown, data = best[0]
        if len(cands) > 1:
            prep.notes.append(f"{lab}: graded {shown}; ignored " +
                              ", ".join(c[1] for c in cands[1:]))
        if data is None:
            prep.problems[lab] = f"{shown} is larger than {LAB_FILE_MAX // 1024} KiB"
        elif _looks_binary(data):
            prep.problems[lab] = f"{shown} is not a C source file (it holds binary data)"
        else:
            prep.files[lab] = shown
            prep.sha256[lab] = hashlib.sha256(data).hexdigest()


def digest(prep: Prepared) -> str:
    """sha256 of what will be graded: the lab files taken, and why anything was not."""
    h = hashlib.sha256()
    for lab in sorted(set(prep.sha256) | set(prep.problems)):
        h.update(f"{lab}\0{prep.sha256.get(lab, '')}\0{prep.problems.get(lab, '')}\n".encode())
    h.update(f"refused\0{prep.refused}\n".encode())
    return h.hexdigest()


def save_prepared(prep: Prepared, work: Path):
    data = json.dumps(asdict(prep), indent=2) + "\n"
    tmp = Path(work) / f".{MANIFEST}.tmp"
    tmp.write_text(data)
    os.replace(tmp, Path(work) / MANIFEST)


def load_prepared(work: Path) -> Prepared:
    data = json.loads((Path(work) / MANIFEST).read_text())
    return Prepared(**data)
