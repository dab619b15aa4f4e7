"""grader/procfs.py: the grader's own readers of /proc/<pid>/*, on this machine's
real files and on malformed text."""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import procfs  # noqa: E402
from grader.procfs import (VMA, ProcError, blocked_in_recv, pages_not_filled,  # noqa: E402
                           parse_maps, parse_maps_line, parse_smaps_rollup, parse_stat,
                           parse_status, snapshot)

PAGE = os.sysconf("SC_PAGE_SIZE")


def self_text(name: str) -> str:
    with open(f"/proc/self/{name}") as f:
        return f.read()


# ---- children for the live tests ---------------------------------------------------

class Child:
    """A forked child that runs `body()` then sits until killed; reports 'ready' on a pipe."""

    def __init__(self, body):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                  # the child
            code = 0
            try:
                os.close(r)
                body(w)
            except BaseException:                     # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.ready_fd = pid, r

    def wait_ready(self, timeout=5.0) -> bytes:
        import select
        ready, _, _ = select.select([self.ready_fd], [], [], timeout)
        assert ready, "the child did not get ready"
        return os.read(self.ready_fd, 64)

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.ready_fd)


@pytest.fixture
def children():
    made = []

    def make(body):
        c = Child(body)
        made.append(c)
        return c
    yield make
    for c in made:
        c.kill()


# ---- stat -----------------------------------------------------------------------

def test_parse_stat_on_this_process():
    st = parse_stat(self_text("stat"))
    assert st["state"] == "R"
    assert st["ppid"] == os.getppid()
    assert st["pgrp"] == os.getpgrp()
    assert st["num_threads"] >= 1
    assert st["minflt"] > 0 and st["majflt"] >= 0 and st["cminflt"] >= 0 and st["cmajflt"] >= 0
    assert st["vsize"] > 0 and st["rss_pages"] > 0
    assert set(st) == {"state", "ppid", "pgrp", "minflt", "cminflt", "majflt", "cmajflt",
                       "num_threads", "vsize", "rss_pages"}


def test_parse_stat_comm_with_parens_and_spaces():
    real = self_text("stat")
    lp, rp = real.index("("), real.rindex(")")
    want = parse_stat(real)
    for comm in ["a) (b c", ") (", "x) R 1 2 3 (y", " ", "((", "))"]:
        text = real[:lp] + f"({comm})" + real[rp + 1:]
        assert parse_stat(text) == want, comm


def test_parse_stat_of_a_real_process_with_a_strange_comm(children):
    def body(w):
        with open("/proc/self/comm", "w") as f:
            f.write("a) (b c) d")
        os.write(w, b"r")
        time.sleep(60)
    c = children(body)
    c.wait_ready()
    text = procfs.read(c.pid, "stat")
    assert "(a) (b c) d)" in text
    st = parse_stat(text)
    assert st["ppid"] == os.getpid()
    assert st["state"] in ("S", "R")
    assert st["num_threads"] == 1


@pytest.mark.parametrize("text, why", [
    ("", "no '\\)'"),
    ("123 (noclose R 1 2 3", "no '\\)'"),
    ("123 (x) R 1 2 3 4 5 6", "fields"),
    ("123 (x) ", "fields"),
    ("123 (x) R one 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22", "stat"),
    ("123 (x) R 1 2 3 4 5 6 seven 8 9 10 11 12 13 14 15 16 17 18 19 20 21", "stat"),
    ("123 (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 2.5", "stat"),
])
def test_parse_stat_malformed(text, why):
    with pytest.raises(ProcError, match=why):
        parse_stat(text)


# ---- status ---------------------------------------------------------------------

def test_parse_status_on_this_process():
    st = parse_status(self_text("status"))
    for k in ("vm_size_kb", "vm_rss_kb", "vm_hwm_kb", "rss_anon_kb", "rss_file_kb",
              "rss_shmem_kb", "vm_data_kb", "vm_stk_kb", "vm_pte_kb"):
        assert isinstance(st[k], int) and st[k] >= 0, k
    assert st["vm_rss_kb"] > 0 and st["vm_size_kb"] >= st["vm_rss_kb"]
    assert st["vm_hwm_kb"] >= st["vm_rss_kb"]
    assert st["vm_rss_kb"] == st["rss_anon_kb"] + st["rss_file_kb"] + st["rss_shmem_kb"]
    assert st["uid"] == os.getuid() and st["gid"] == os.getgid()
    assert st["nspid"] and st["nspid"][-1] == os.getpid()


def test_parse_status_synthetic():
    text = ("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\nNSpid:\t77\t3\n"
            "VmRSS:\t    2180 kB\nRssAnon:\t 100 kB\nno colon line\nVmPTE:\t0 kB\n")
    assert parse_status(text) == {"uid": 1000, "gid": 5, "nspid": [77, 3], "vm_rss_kb": 2180,
                                  "rss_anon_kb": 100, "vm_pte_kb": 0}
    assert parse_status("") == {}


@pytest.mark.parametrize("line", ["VmRSS:\tabc kB", "VmRSS:", "VmRSS:\t-5 kB", "RssAnon: 1.5 kB",
                                  "Uid:", "Uid:\tx 0 0 0"])
def test_parse_status_malformed(line):
    with pytest.raises(ProcError):
        parse_status("Name:\tx\n" + line + "\n")


# ---- smaps_rollup ---------------------------------------------------------------

def test_parse_smaps_rollup_on_this_process():
    r = parse_smaps_rollup(self_text("smaps_rollup"))
    assert r["rss_kb"] > 0 and 0 < r["pss_kb"] <= r["rss_kb"]
    for k in ("pss_anon_kb", "pss_file_kb", "shared_clean_kb", "shared_dirty_kb",
              "private_clean_kb", "private_dirty_kb", "anonymous_kb", "anon_huge_kb",
              "swap_kb", "referenced_kb"):
        assert isinstance(r[k], int) and r[k] >= 0, k
    assert r["rss_kb"] == (r["shared_clean_kb"] + r["shared_dirty_kb"] + r["private_clean_kb"]
                           + r["private_dirty_kb"])


def test_parse_smaps_rollup_synthetic_and_malformed():
    head = "5649174a8000-7ffdbf7f8000 ---p 00000000 00:00 0     [rollup]\n"
    assert parse_smaps_rollup(head + "Rss:   10 kB\nPss:  4 kB\nPss_Dirty: 3 kB\n") == \
        {"rss_kb": 10, "pss_kb": 4}
    with pytest.raises(ProcError, match="Rss"):
        parse_smaps_rollup(head + "Pss:  4 kB\n")
    with pytest.raises(ProcError, match="Rss"):
        parse_smaps_rollup(head + "Rss:  4 kB\n")          # no Pss either
    with pytest.raises(ProcError, match="Rss"):
        parse_smaps_rollup("")
    with pytest.raises(ProcError, match="not a number"):
        parse_smaps_rollup(head + "Rss:  x kB\nPss: 4 kB\n")
    with pytest.raises(ProcError, match="not a number"):
        parse_smaps_rollup(head + "Rss:\nPss: 4 kB\n")


# ---- maps -----------------------------------------------------------------------

def test_parse_maps_on_this_process():
    vmas = parse_maps(self_text("maps"))
    assert vmas
    kinds = {v.kind for v in vmas}
    assert {"stack", "anon", "file"} <= kinds
    for v in vmas:
        assert v.start < v.end and v.size == v.end - v.start and v.size % PAGE == 0
        assert len(v.perms) == 4 and v.perms[3] in "ps"
    starts = [v.start for v in vmas]
    assert starts == sorted(starts)
    # a live object of ours lies in one of the mappings, and in only one
    x = ctypes.c_int(5)
    assert sum(v.contains(ctypes.addressof(x)) for v in vmas) == 1
    exe = os.readlink("/proc/self/exe")
    assert any(v.path == exe for v in vmas)


ANON = "7fde4c781000-7fde4c7a3000 rw-p 00000000 00:00 0 "
HEAP = "55894f27c000-55894f29d000 rw-p 00000000 00:00 0                          [heap]"
SPACES = "7fde4c7a3000-7fde4c7fa000 r--p 00001000 fe:00 320475                     /tmp/my dir/a  b.so"
DELETED = "7fde4c7fa000-7fde4c7fb000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)"


def test_parse_maps_line_anonymous():
    v = parse_maps_line(ANON)
    assert v == VMA(0x7fde4c781000, 0x7fde4c7a3000, "rw-p", 0, "00:00", 0, "")
    assert v.kind == "anon" and v.size == 0x22000
    assert parse_maps_line(ANON.rstrip()) == v          # with or without the trailing space


def test_parse_maps_line_heap():
    v = parse_maps_line(HEAP)
    assert (v.path, v.kind, v.perms, v.inode) == ("[heap]", "heap", "rw-p", 0)


def test_parse_maps_line_path_with_spaces():
    v = parse_maps_line(SPACES)
    assert v.path == "/tmp/my dir/a  b.so"
    assert v.offset == 0x1000 and v.dev == "fe:00" and v.inode == 320475
    assert v.kind == "file"


def test_parse_maps_line_deleted():
    v = parse_maps_line(DELETED)
    assert v.path == "/dev/zero (deleted)" and v.kind == "file" and v.perms == "rw-s"


def test_parse_maps_skips_blank_lines():
    assert [v.path for v in parse_maps(f"{ANON}\n\n{HEAP}\n   \n")] == ["", "[heap]"]


@pytest.mark.parametrize("line", [
    "7fde4c781000-7fde4c7a3000 rw-p 00000000",                 # short
    "7fde4c781000 rw-p 00000000 00:00 0",                       # no range
    "zzzz-7fde4c7a3000 rw-p 00000000 00:00 0",                  # not hex
    "7fde4c781000-7fde4c7a3000 rw- 00000000 00:00 0",           # perms too short
    "7fde4c7a3000-7fde4c781000 rw-p 00000000 00:00 0",          # end < start
    "7fde4c781000-7fde4c7a3000 rw-p 0000zz00 00:00 0",          # offset
    "7fde4c781000-7fde4c7a3000 rw-p 00000000 00:00 x",          # inode
    "1-2-3 rw-p 00000000 00:00 0",
])
def test_parse_maps_line_malformed(line):
    with pytest.raises(ProcError, match="maps"):
        parse_maps_line(line)


@pytest.mark.parametrize("path, kind", [
    ("[heap]", "heap"),
    ("[stack]", "stack"),
    ("[stack:1234]", "stack"),
    ("[vdso]", "vdso"),
    ("[vvar]", "vvar"),
    ("[vvar_vclock]", "vvar_vclock"),
    ("[vsyscall]", "vsyscall"),
    ("", "anon"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "file"),
    ("/tmp/x (deleted)", "file"),
    ("[uprobes]", "uprobes"),
])
def test_vma_kind(path, kind):
    v = VMA(0x1000, 0x3000, "r--p", 0, "00:00", 0, path)
    assert v.kind == kind
    d = v.as_dict()
    assert d == {"start": 0x1000, "end": 0x3000, "size": 0x2000, "perms": "r--p", "offset": 0,
                 "dev": "00:00", "inode": 0, "path": path, "kind": kind}
    assert v.contains(0x1000) and v.contains(0x2fff) and not v.contains(0x3000) \
        and not v.contains(0xfff)


# ---- snapshot, read -------------------------------------------------------------

def test_snapshot_of_this_process():
    obs = snapshot(os.getpid())
    want = {"pid", "state", "ppid", "pgrp", "minflt", "cminflt", "majflt", "cmajflt",
            "num_threads", "vsize", "rss_pages", "vm_size_kb", "vm_rss_kb", "vm_hwm_kb",
            "rss_anon_kb", "rss_file_kb", "rss_shmem_kb", "vm_data_kb", "vm_stk_kb", "vm_pte_kb",
            "nspid", "uid", "gid", "rss_kb", "pss_kb", "pss_anon_kb", "pss_file_kb",
            "shared_clean_kb", "shared_dirty_kb", "private_clean_kb", "private_dirty_kb",
            "anonymous_kb", "anon_huge_kb", "swap_kb", "referenced_kb", "maps", "exe"}
    assert want <= set(obs), want - set(obs)
    assert obs["pid"] == os.getpid()
    assert obs["exe"] == os.readlink("/proc/self/exe")
    assert all(isinstance(v, VMA) for v in obs["maps"])


def test_read_and_snapshot_of_a_missing_process():
    with pytest.raises(ProcError, match="/proc/999999999/stat"):
        procfs.read(999999999, "stat")
    with pytest.raises(ProcError):
        snapshot(999999999)


# ---- pages_not_filled -----------------------------------------------------------

FILL = 0x5A
CHUNK_PAGES = (4 << 20) // PAGE


@pytest.fixture
def filled_child(children):
    """A child whose private anonymous region (2 full 4 MiB chunks and 5 pages,
    filled with FILL before the fork) differs from FILL in exactly CHANGED pages."""
    npages = 2 * CHUNK_PAGES + 5
    m = mmap.mmap(-1, npages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m[:] = bytes([FILL]) * (npages * PAGE)
    ref = ctypes.c_char.from_buffer(m)
    addr = ctypes.addressof(ref)
    del ref
    # first page of chunk 0 (one byte), a page in the middle (its last byte), a whole
    # page of the second chunk, and the last page of the partial tail
    changed = {0: [(0, 0)], 7: [(PAGE - 1, 1)], CHUNK_PAGES + 3: [(i, 0) for i in range(0, PAGE, 512)],
               npages - 1: [(100, FILL ^ 0xFF)]}

    def body(w):
        for pg, writes in changed.items():
            for off, val in writes:
                m[pg * PAGE + off] = val
        m[9 * PAGE + 5] = FILL             # written, but with the same byte: not changed
        os.write(w, b"r")
        time.sleep(60)
    child = children(body)
    child.wait_ready()
    try:
        yield child.pid, addr, npages, set(changed)
    finally:
        m.close()


def _mem_readable(pid):
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return False
    os.close(fd)
    return True


def test_pages_not_filled_counts_exactly_the_changed_pages(filled_child):
    pid, addr, npages, changed = filled_child
    if not _mem_readable(pid):
        pytest.skip("cannot read a child's /proc/<pid>/mem here")
    assert pages_not_filled(pid, addr, npages * PAGE, FILL, PAGE) == len(changed)
    # our own copy was never changed
    assert pages_not_filled(os.getpid(), addr, npages * PAGE, FILL, PAGE) == 0
    # sub-ranges
    assert pages_not_filled(pid, addr, 7 * PAGE, FILL, PAGE) == 1                  # page 0
    assert pages_not_filled(pid, addr + PAGE, 6 * PAGE, FILL, PAGE) == 0           # pages 1..6
    assert pages_not_filled(pid, addr + 7 * PAGE, PAGE, FILL, PAGE) == 1           # page 7
    assert pages_not_filled(pid, addr + CHUNK_PAGES * PAGE, CHUNK_PAGES * PAGE, FILL, PAGE) == 1
    assert pages_not_filled(pid, addr + (npages - 1) * PAGE, PAGE, FILL, PAGE) == 1
    # against another byte, every page differs
    assert pages_not_filled(pid, addr, 16 * PAGE, 0, PAGE) == 16


def test_pages_not_filled_rejects_bad_regions(filled_child):
    pid, addr, npages, _ = filled_child
    for a, n in [(addr + 1, PAGE), (addr, PAGE + 1), (addr, -PAGE), (addr, 1 << 35), (addr + 1, 0)]:
        with pytest.raises(ProcError, match="bad region"):
            pages_not_filled(pid, a, n, FILL, PAGE)
    assert pages_not_filled(pid, addr, 0, FILL, PAGE) == 0      # nothing to read (faults: zero page)


def test_poke_pages_overwrites_whole_pages_of_that_process_only(filled_child):
    """The grader's canary: n whole pages, drawn by the rng, overwritten in the child;
    a count of the child's changed pages then finds them too; the parent's memory
    (shared copy-on-write before the fork) is untouched."""
    import random
    pid, addr, npages, changed = filled_child
    if not _mem_readable(pid):
        pytest.skip("cannot read a child's /proc/<pid>/mem here")
    before = pages_not_filled(pid, addr, npages * PAGE, FILL, PAGE)
    assert before == len(changed)
    rng = random.Random(5)
    drawn = sorted(random.Random(5).sample(range(npages), 6))
    assert procfs.poke_pages(pid, addr, npages * PAGE, 6, FILL ^ 0x55, PAGE, rng) == 6
    assert pages_not_filled(pid, addr, npages * PAGE, FILL, PAGE) == len(changed | set(drawn))
    assert pages_not_filled(os.getpid(), addr, npages * PAGE, FILL, PAGE) == 0
    with pytest.raises(ProcError, match="bad region"):
        procfs.poke_pages(pid, addr + 1, PAGE, 1, 0, PAGE, rng)


def test_pages_not_filled_unmapped_region_is_a_proc_error(filled_child):
    pid, addr, npages, _ = filled_child
    if not _mem_readable(pid):
        pytest.skip("cannot read a child's /proc/<pid>/mem here")
    with pytest.raises(ProcError, match="/proc/"):
        pages_not_filled(pid, PAGE, PAGE, FILL, PAGE)          # page 1 is never mapped
    with pytest.raises(ProcError):
        pages_not_filled(999999999, addr, PAGE, FILL, PAGE)


# ---- blocked_in_recv ------------------------------------------------------------

def test_blocked_in_recv_sleeping_vs_busy(children):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def sleeper(w):
        b.close()
        os.write(w, b"r")
        a.recv(10)                     # blocks: nobody sends
        time.sleep(60)

    def spinner(w):
        os.write(w, b"r")
        while True:
            pass

    s = children(sleeper)
    busy = children(spinner)
    a.close()
    try:
        s.wait_ready()
        busy.wait_ready()
        if blocked_in_recv(s.pid) is None:
            pytest.skip("/proc/<pid>/syscall is not readable here")
        deadline = time.monotonic() + 3
        while blocked_in_recv(s.pid) is not True and time.monotonic() < deadline:
            time.sleep(0.005)
        assert blocked_in_recv(s.pid) is True
        assert all(blocked_in_recv(busy.pid) is False for _ in range(20))
        # a process sleeping in another system call is not waiting for the grader
        sl = children(lambda w: (os.write(w, b"r"), time.sleep(60)))
        sl.wait_ready()
        time.sleep(0.05)
        assert blocked_in_recv(sl.pid) is False
    finally:
        b.close()
    assert blocked_in_recv(999999999) is None


def test_end_with_signal_reaches_only_the_graders_descendants():
    child = subprocess.Popen(["sleep", "30"])
    try:
        me = os.getpid()
        assert procfs.descends_from(child.pid, me) and not procfs.descends_from(me, child.pid)
        assert procfs.end_with_signal(child.pid, "none", me) == "none"
        assert child.poll() is None
        with pytest.raises(ValueError, match="not a signal name"):
            procfs.end_with_signal(child.pid, "SIGNOPE", me)
        # a pid a message might claim, of a process the grader did not start
        with pytest.raises(procfs.ProcError, match="not started by the grader"):
            procfs.end_with_signal(os.getppid(), "SIGUSR2", me)
        with pytest.raises(procfs.ProcError, match="not started by the grader"):
            procfs.end_with_signal(1, "SIGUSR2", me)
        assert procfs.end_with_signal(child.pid, "SIGUSR2", me) == "SIGUSR2"
        assert child.wait(timeout=5) == -signal.SIGUSR2
    finally:
        child.kill()
        child.wait()
