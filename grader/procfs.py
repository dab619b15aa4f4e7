"""The grader's own readers of /proc/<pid>/{stat,status,smaps_rollup,maps}.

The grader reads these files itself, while the lab waits at a checkpoint, and
trusts them rather than anything the lab reports.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass


class ProcError(Exception):
    pass


def parse_stat(text: str) -> dict:
    """Fields of /proc/<pid>/stat that the checks use. comm may hold ')' and spaces."""
    rp = text.rfind(")")
    if rp < 0:
        raise ProcError("stat: no ')' after comm")
    fields = text[rp + 2:].split()
    if len(fields) < 22:
        raise ProcError(f"stat: {len(fields)} fields after comm, expected at least 22")
    try:
        return {
            "state": fields[0],
            "ppid": int(fields[1]),
            "pgrp": int(fields[2]),
            "minflt": int(fields[7]),
            "cminflt": int(fields[8]),
            "majflt": int(fields[9]),
            "cmajflt": int(fields[10]),
            "num_threads": int(fields[17]),
            "vsize": int(fields[20]),
            "rss_pages": int(fields[21]),
        }
    except ValueError as e:
        raise ProcError(f"stat: {e}") from None


_STATUS_KB = {"VmSize": "vm_size_kb", "VmRSS": "vm_rss_kb", "VmHWM": "vm_hwm_kb",
              "RssAnon": "rss_anon_kb", "RssFile": "rss_file_kb", "RssShmem": "rss_shmem_kb",
              "VmData": "vm_data_kb", "VmStk": "vm_stk_kb", "VmPTE": "vm_pte_kb"}


def parse_status(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        if key in _STATUS_KB:
            num = value.split()[0] if value else ""
            if not num.isdigit():
                raise ProcError(f"status: {key} is not a number: {value!r}")
            out[_STATUS_KB[key]] = int(num)
        elif key == "NSpid":
            out["nspid"] = [int(x) for x in value.split() if x.isdigit()]
        elif key in ("Uid", "Gid"):
            num = value.split()[0] if value else ""
            if not num.isdigit():
                raise ProcError(f"status: {key} is not a number: {value!r}")
            out[key.lower()] = int(num)
        elif key == "CapEff":
            try:
                out["cap_eff"] = int(value, 16)
            except ValueError:
                raise ProcError(f"status: CapEff is not hexadecimal: {value!r}") from None
    return out


_ROLLUP_KB = {"Rss": "rss_kb", "Pss": "pss_kb", "Pss_Anon": "pss_anon_kb",
              "Pss_File": "pss_file_kb", "Shared_Clean": "shared_clean_kb",
              "Shared_Dirty": "shared_dirty_kb", "Private_Clean": "private_clean_kb",
              "Private_Dirty": "private_dirty_kb", "Anonymous": "anonymous_kb",
              "AnonHugePages": "anon_huge_kb", "Swap": "swap_kb", "Referenced": "referenced_kb"}


def parse_smaps_rollup(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in _ROLLUP_KB:
            parts = value.split()
            if not parts or not parts[0].isdigit():
                raise ProcError(f"smaps_rollup: {key} is not a number: {value!r}")
            out[_ROLLUP_KB[key]] = int(parts[0])
    if "rss_kb" not in out or "pss_kb" not in out:
        raise ProcError("smaps_rollup: no Rss/Pss lines")
    return out


@dataclass(frozen=True)
class VMA:
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def kind(self) -> str:
        """heap, stack, vdso, vvar, anon (no name), file, or another [name]."""
        p = self.path
        if p == "[heap]":
            return "heap"
        if p.startswith("[stack"):
            return "stack"
        if p in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
            return p.strip("[]")
        if p == "":
            return "anon"
        if p.startswith("["):
            return p.strip("[]")
        return "file"

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "size": self.size, "perms": self.perms,
                "offset": self.offset, "dev": self.dev, "inode": self.inode, "path": self.path,
                "kind": self.kind}


def parse_maps_line(line: str) -> VMA:
    parts = line.split(None, 5)
    if len(parts) < 5:
        raise ProcError(f"maps: short line {line!r}")
    try:
        lo, hi = parts[0].split("-")
        start, end = int(lo, 16), int(hi, 16)
        perms = parts[1]
        if len(perms) != 4 or end < start:
            raise ValueError(line)
        return VMA(start, end, perms, int(parts[2], 16), parts[3], int(parts[4]),
                   parts[5].strip() if len(parts) > 5 else "")
    except ValueError:
        raise ProcError(f"maps: malformed line {line!r}") from None


def parse_maps(text: str) -> list[VMA]:
    return [parse_maps_line(line) for line in text.splitlines() if line.strip()]


def read(pid: int, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        raise ProcError(f"/proc/{pid}/{name}: {e.strerror}") from None


def snapshot(pid: int) -> dict:
    """Everything the checks may use about a process, read in one go."""
    obs = {"pid": pid}
    obs.update(parse_stat(read(pid, "stat")))
    obs.update(parse_status(read(pid, "status")))
    obs.update(parse_smaps_rollup(read(pid, "smaps_rollup")))
    obs["maps"] = parse_maps(read(pid, "maps"))
    try:
        obs["exe"] = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        obs["exe"] = ""
    for name in ("oom_score", "oom_score_adj"):
        try:
            obs[name] = int(read(pid, name))
        except (ProcError, ValueError):
            pass
    try:
        obs["cgroup"] = read(pid, "cgroup")
    except ProcError:
        obs["cgroup"] = ""
    return obs


def state(pid: int) -> str:
    """A process's state letter (R, S, D, T, Z, ...), or "gone"."""
    try:
        return parse_stat(read(pid, "stat"))["state"]
    except ProcError:
        return "gone"


def blocked_in_recv(pid: int, fd: int | None = None) -> bool | None:
    """True when the process sits in a receive syscall (waiting for our "go"),
    on descriptor `fd` if given.

    None when /proc/<pid>/syscall cannot be read (needs ptrace access)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()
    except OSError:
        return None
    if not first or first[0] == "running":
        return False
    # x86_64: read 0, recvfrom 45, recvmsg 47, recvmmsg 299; aarch64: read 63,
    # recvfrom 207, recvmsg 212, recvmmsg 243
    try:
        nr = int(first[0])
    except ValueError:
        return False
    if nr not in ({0, 45, 47, 299} if os.uname().machine == "x86_64" else {63, 207, 212, 243}):
        return False
    if fd is None:
        return True
    try:
        return int(first[1], 16) == fd
    except (IndexError, ValueError):
        return False


def _check_region(addr: int, length: int, page: int, what: str) -> None:
    """A region of whole pages, not empty, at most 16 GiB: else ProcError."""
    if length <= 0 or length > 1 << 34 or addr % page or length % page:
        raise ProcError(f"bad region {addr:#x}+{length} {what}")


def pages_not_filled(pid: int, addr: int, length: int, byte: int, page: int) -> int:
    """How many pages of [addr, addr+length) in process pid are not entirely `byte`.

    Read through /proc/<pid>/mem (needs ptrace access: the grader's own child,
    or root). An empty region has none (nothing is read)."""
    if length == 0 and addr % page == 0:
        return 0
    _check_region(addr, length, page, "for a page count")
    chunk = 4 << 20
    full_page = bytes([byte]) * page
    full_chunk = full_page * (chunk // page)
    unlike = 0
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError as e:
        raise ProcError(f"/proc/{pid}/mem: {e.strerror}") from None
    try:
        buf = bytearray(chunk)
        off = 0
        while off < length:
            n = min(chunk, length - off)
            view = memoryview(buf)[:n]
            got = os.preadv(fd, [view], addr + off)
            if got != n:
                raise ProcError(f"/proc/{pid}/mem: short read at {addr + off:#x}")
            if n == chunk and buf == full_chunk:
                off += n
                continue
            for i in range(0, n, page):
                if view[i:i + page] != full_page:
                    unlike += 1
            off += n
    except OSError as e:
        raise ProcError(f"/proc/{pid}/mem at {addr + off:#x}: {e.strerror}") from None
    finally:
        os.close(fd)
    return unlike


def numa_placement(pid: int, addr: int) -> dict:
    """Where the pages of the mapping holding addr are: {"policy", "pages": [count
    on node 0, node 1, ...], "total", "start"} from /proc/<pid>/numa_maps."""
    vma = next((v for v in parse_maps(read(pid, "maps")) if v.contains(addr)), None)
    if vma is None:
        raise ProcError(f"no mapping holds {addr:#x} in process {pid}")
    for line in read(pid, "numa_maps").splitlines():
        fields = line.split()
        if not fields or int(fields[0], 16) != vma.start:
            continue
        counts: dict[int, int] = {}
        for f in fields[2:]:
            key, _, value = f.partition("=")
            if key.startswith("N") and key[1:].isdigit() and value.isdigit():
                counts[int(key[1:])] = int(value)
        nodes = max(counts, default=-1) + 1
        pages = [counts.get(n, 0) for n in range(nodes)]
        return {"policy": fields[1] if len(fields) > 1 else "", "pages": pages,
                "total": sum(pages), "start": vma.start, "size": vma.size}
    raise ProcError(f"/proc/{pid}/numa_maps has no line for the mapping at {vma.start:#x}")


def poke_pages(pid: int, addr: int, length: int, count: int, byte: int, page: int, rng) -> int:
    """Overwrite `count` whole pages of [addr, addr+length) in process pid, drawn by rng,
    with `byte`: how many were written. Through /proc/<pid>/mem, as the kernel writes
    for a debugger: a page the process shares copy-on-write is copied for it alone.
    A lab that counts its changed pages must then count these."""
    _check_region(addr, length, page, "to poke")
    count = max(0, min(count, length // page))
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    except OSError as e:
        raise ProcError(f"/proc/{pid}/mem: {e.strerror}") from None
    data = bytes([byte]) * page
    done = 0
    try:
        for i in sorted(rng.sample(range(length // page), count)):
            if os.pwrite(fd, data, addr + i * page) != page:
                raise ProcError(f"/proc/{pid}/mem: short write at {addr + i * page:#x}")
            done += 1
    except OSError as e:
        raise ProcError(f"/proc/{pid}/mem: {e.strerror}") from None
    finally:
        os.close(fd)
    return done


def pages_with_foreign_bytes(pid: int, addr: int, length: int, allowed: bytes, page: int) -> int:
    """How many pages of [addr, addr+length) hold a byte value not in `allowed`."""
    _check_region(addr, length, page, "for a page count")
    chunk = 4 << 20
    foreign = 0
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError as e:
        raise ProcError(f"/proc/{pid}/mem: {e.strerror}") from None
    try:
        off = 0
        while off < length:
            n = min(chunk, length - off)
            data = os.pread(fd, n, addr + off)
            if len(data) != n:
                raise ProcError(f"/proc/{pid}/mem: short read at {addr + off:#x}")
            if data.translate(None, allowed):          # something else is there
                for i in range(0, n, page):
                    if data[i:i + page].translate(None, allowed):
                        foreign += 1
            off += n
    except OSError as e:
        raise ProcError(f"/proc/{pid}/mem at {addr + off:#x}: {e.strerror}") from None
    finally:
        os.close(fd)
    return foreign


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process pid is `ancestor` or one of its descendants (by parent links)."""
    seen = 0
    while pid > 1 and seen < 4096:
        if pid == ancestor:
            return True
        try:
            pid = parse_stat(read(pid, "stat"))["ppid"]
        except (ProcError, KeyError, ValueError):
            return False
        seen += 1
    return pid == ancestor


def end_with_signal(pid: int, name: str, ancestor: int) -> str:
    """Send the signal called `name` ("SIGTERM"; "none": nothing) to pid, which
    must descend from `ancestor` (the grader: never a process it did not start,
    whatever pid a message claims). Returns the name sent."""
    if name == "none":
        return name
    try:
        sig = signal.Signals[name]
    except KeyError:
        raise ValueError(f"'{name}' is not a signal name (like SIGTERM)") from None
    if not descends_from(pid, ancestor):
        raise ProcError(f"process {pid} was not started by the grader: not signalled")
    try:
        os.kill(pid, sig)
    except OSError as e:
        raise ProcError(f"kill({pid}, {name}): {e.strerror}") from None
    return name
