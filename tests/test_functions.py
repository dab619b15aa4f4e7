"""grader/functions.py: the functions lab.toml expressions call, on synthetic
checkpoints (grader.checks.checkpoint_ns over grader.runner.Checkpoint objects)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader.checks import checkpoint_ns  # noqa: E402
from grader.expr import NS, Evaluator, Missing  # noqa: E402
from grader.functions import functions, killed_by  # noqa: E402
from grader.procfs import parse_maps  # noqa: E402
from grader.runner import Checkpoint  # noqa: E402

EXE = "/work/build/labs/maps/maps"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"

MAPS = f"""\
555500000000-555500001000 r--p 00000000 fe:00 11 {EXE}
555500001000-555500002000 r-xp 00001000 fe:00 11 {EXE}
555500002000-555500003000 r--p 00002000 fe:00 11 {EXE}
555500003000-555500004000 rw-p 00003000 fe:00 11 {EXE}
555500004000-555500006000 rw-p 00000000 00:00 0
555500100000-555500200000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7f0000100000-7f0000101000 r--p 00000000 00:00 0
7f0000101000-7f0000102000 ---p 00000000 00:00 0
7f0000200000-7f0000228000 r--p 00000000 fe:00 22 {LIBC}
7f0000228000-7f0000300000 r-xp 00028000 fe:00 22 {LIBC}
7f0000300000-7f0000304000 r--p 00100000 fe:00 22 {LIBC}
7f0000304000-7f0000306000 rw-p 00104000 fe:00 22 {LIBC}
7f0000400000-7f0000401000 rw-s 00000000 00:01 33 /dev/shm/x (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
"""

# the same process, but the anonymous rw mapping after the executable leaves a gap
MAPS_GAP = MAPS.replace("555500004000-555500006000 rw-p", "555500005000-555500006000 rw-p")

ADDR = {
    "elf_header": 0x555500000010, "text": 0x555500001500, "rodata": 0x555500002fff,
    "data": 0x555500003000, "bss": 0x555500004100, "bss_end": 0x555500005fff,
    "heap": 0x555500150000, "mmap": 0x7f0000000800, "anon_ro": 0x7f0000100010,
    "guard": 0x7f0000101000, "libc_text": 0x7f0000230000, "libc_ro": 0x7f0000200000,
    "libc_data": 0x7f0000305000, "shm": 0x7f0000400100, "stack": 0x7ffd00020ff8,
    "vdso": 0x7ffd00100000, "unmapped": 0x1000, "unmapped_gap": 0x555500006000,
}


def make_cp(name, maps_text=MAPS, exe=EXE, seq=3, pid=100, role="main", held=True, **obs):
    data = {"minflt": 10, "rss_anon_kb": 500, "exe": exe, "maps": parse_maps(maps_text)}
    data.update(obs)
    return Checkpoint(name, seq, pid, role, held, data, "", 0.25)


FIGS = {
    "ladder.0.size": 100, "ladder.0.addr": ADDR["heap"], "ladder.0.where": "heap",
    "ladder.10.size": 1 << 20, "ladder.10.addr": ADDR["mmap"],
    "ladder.2.size": 4096, "ladder.2.addr": ADDR["heap"] + 64,
    "ladder.1.size": 200, "ladder.1.where": "heap",
    "ladder.x.size": 1, "ladder.3": 7, "ladder.4.a.b": 9, "ladders.5.size": 1, "other.6.size": 1,
    "obj.text.addr": ADDR["text"], "obj.text.kind": "text", "total": 42,
}

# messages: 1 hello, 2 fig ladder.0.size, 3 cp ladder, 4 fig total, 5 fig ladder.0.size (again),
# 6 cp done
MESSAGES = [
    {"seq": 1, "pid": 100, "kind": "hello", "name": "maps", "value": None},
    {"seq": 2, "pid": 100, "kind": "fig", "name": "ladder.0.size", "value": 100},
    {"seq": 3, "pid": 100, "kind": "cp", "name": "ladder", "value": None},
    {"seq": 4, "pid": 100, "kind": "fig", "name": "total", "value": 42},
    {"seq": 5, "pid": 100, "kind": "fig", "name": "ladder.0.size", "value": 100},
    {"seq": 6, "pid": 100, "kind": "cp", "name": "done", "value": None},
]


def ev_(call, args, ret="0", at=0.5, **kw):
    e = {"pid": 100, "call": call, "args": args, "ret": ret, "ret_int": int(ret, 0), "at": at}
    e.update(kw)
    return e


TRACE = [
    ev_("brk", "NULL", "0x555500100000", 0.5),
    ev_("sendto", '3, "hello memlab/1 maps", 20, 0, NULL, 0', "20", 1, msg="hello memlab/1 maps"),
    ev_("mmap", "NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0",
        "0x7f0000000000", 1.5),
    ev_("brk", "0x555500200000", "0x555500200000", 1.5),
    ev_("sendto", '3, "fig ladder.0.size 100", 21, 0, NULL, 0', "21", 2, msg="fig ladder.0.size 100"),
    ev_("munmap", "0x7f0000000000, 1052672", "0", 2.5),
    ev_("sendto", '3, "cp ladder", 9, 0, NULL, 0', "9", 3, msg="cp ladder"),
    ev_("mmap", "NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", "0x7f0000100000", 3.5),
    ev_("sendto", '3, "fig total 42", 12, 0, NULL, 0', "12", 4, msg="fig total 42"),
    ev_("mmap", "0x7f0000400000, 4096, PROT_READ, MAP_SHARED, 5, 0x1000", "0x7f0000400000", 4.5),
    ev_("sendto", '3, "fig ladder.0.size 100", 21, 0, NULL, 0', "21", 5, msg="fig ladder.0.size 100"),
    ev_("munmap", "0x7f0000100000, 8192", "0", 5.5),
]


@pytest.fixture
def names():
    cps = [make_cp("start", seq=3), make_cp("placed", seq=6, minflt=20),
           make_cp("gap", maps_text=MAPS_GAP), make_cp("noexe", exe=""),
           make_cp("placed", seq=9, minflt=99)]      # a second 'placed': has_cp sees the first
    first = {}
    all_cps: dict = {}
    for c in cps:
        first.setdefault(c.name, checkpoint_ns(c))
        all_cps.setdefault(c.name, []).append(c)
    return {
        "cp": NS(first, lambda k: f"the lab never reached checkpoint '{k}'"),
        "fig": NS(FIGS, lambda k: f"the lab did not report figure '{k}'"),
        "trace": [NS(e, "trace field") for e in TRACE],
        "messages": [NS(m, "message field") for m in MESSAGES],
        "_all_cps": all_cps,
    }


@pytest.fixture
def fn(names):
    return functions(names)


@pytest.fixture
def ev(names):
    e = Evaluator(names, functions(names))
    return e.eval


# ---- checkpoint_ns ----------------------------------------------------------------

def test_checkpoint_ns_fields():
    cp = checkpoint_ns(make_cp("start", pid=123, role="child", held=None))
    assert cp.get("name") == "start" and cp.get("pid") == 123 and cp.get("role") == "child"
    assert cp.get("held") is None and cp.get("t") == 0.25 and cp.get("minflt") == 10
    assert cp.get("exe") == EXE
    v = cp.get("maps")[0]
    assert isinstance(v, NS)
    assert v.as_dict() == {"start": 0x555500000000, "end": 0x555500001000, "size": 0x1000,
                           "perms": "r--p", "offset": 0, "dev": "fe:00", "inode": 11,
                           "path": EXE, "kind": "file"}
    with pytest.raises(Missing, match="the grader observed no 'vm_rss_kb' at checkpoint 'start'"):
        cp.get("vm_rss_kb")
    with pytest.raises(Missing, match="VMA field"):
        v.get("colour")


def test_function_table_is_complete(fn):
    assert set(fn) == {"has_cp", "anon_kb", "vma_at", "count_cp", "figs", "between", "where",
                       "items", "message_seq", "calls_before", "calls_after", "arg", "segment",
                       "cp_seq", "calls", "signals_sent", "opened",
                       "exe_extent", "unmeasured", "writes", "reads", "proc_file", "killed_by",
                       "ended"}


# ---- has_cp, count_cp -------------------------------------------------------------

def test_has_cp_and_count_cp(ev):
    assert ev("has_cp('start')") is True
    assert ev("has_cp('nope')") is False
    assert ev("all(has_cp(c) for c in ['start', 'placed'])") is True
    assert ev("count_cp('placed')") == 2
    assert ev("count_cp('start')") == 1
    assert ev("count_cp('nope')") == 0
    assert ev("cp.placed.minflt") == 20          # the first checkpoint of that name


def test_count_cp_without_all_cps():
    f = functions({"cp": NS({})})
    assert f["count_cp"]("x") == 0


# ---- anon_kb, vma_at ---------------------------------------------------------------

def test_anon_kb(ev):
    # writable anonymous mappings only: bss 8 kB + mmap 1024 kB; not heap, stack, the
    # read-only or PROT_NONE anonymous ones, nor file mappings
    assert ev("anon_kb(cp.start)") == 8 + 1024
    assert ev("anon_kb(cp.gap)") == 4 + 1024


def test_anon_kb_of_no_maps():
    f = functions({})
    assert f["anon_kb"](checkpoint_ns(make_cp("x", maps_text=""))) == 0


def test_vma_at(ev, names):
    v = ev(f"vma_at(cp.start, {ADDR['mmap']})")
    assert v.get("start") == 0x7f0000000000 and v.get("end") == 0x7f0000100000
    assert ev(f"vma_at(cp.start, {ADDR['mmap']}).size") == 0x100000
    assert ev(f"vma_at(cp.start, {ADDR['heap']}).kind") == "heap"
    assert ev("vma_at(cp.start, 0x555500001000).perms") == "r-xp"    # start: inclusive
    assert ev("vma_at(cp.start, 0x555500000fff).perms") == "r--p"
    assert ev("vma_at(cp.start, 0x555500006000)") is None              # end: exclusive
    assert ev(f"vma_at(cp.start, {ADDR['unmapped']})") is None
    assert ev("vma_at(cp.start, 'text')") is None                      # not an address
    assert ev("vma_at(cp.start, None)") is None
    assert ev("vma_at(cp.start, 1.5)") is None
    assert ev("vma_at(cp.start, fig['obj.text.addr']).path") == EXE


# ---- where --------------------------------------------------------------------------

@pytest.mark.parametrize("where, want", [
    ("heap", "heap"), ("mmap", "mmap"), ("stack", "stack"), ("unmapped", "unmapped"),
    ("unmapped_gap", "unmapped"), ("anon_ro", "anon-r--p"), ("guard", "anon----p"),
    ("bss", "mmap"), ("libc_text", "file"), ("text", "file"), ("shm", "file"), ("vdso", "vdso"),
])
def test_where(ev, where, want):
    assert ev(f"where(cp.start, {ADDR[where]})") == want


def test_where_of_a_non_address(ev):
    assert ev("where(cp.start, 'x')") == "unmapped"


# ---- segment, exe_extent ---------------------------------------------------------------

@pytest.mark.parametrize("where, want", [
    ("elf_header", "rodata"), ("text", "text"), ("rodata", "rodata"), ("data", "data"),
    ("bss", "bss"), ("bss_end", "bss"), ("heap", "heap"), ("stack", "stack"), ("mmap", "mmap"),
    ("anon_ro", "anon-r--p"), ("guard", "anon----p"), ("libc_text", "lib"),
    ("libc_ro", "lib-data"), ("libc_data", "lib-data"), ("shm", "lib-data"), ("vdso", "vdso"),
    ("unmapped", "unmapped"), ("unmapped_gap", "unmapped"),
])
def test_segment(ev, where, want):
    assert ev(f"segment(cp.start, {ADDR[where]})") == want


def test_segment_bss_only_when_it_starts_at_the_executables_end(ev):
    # with a gap after the executable the anonymous rw mapping is just a mapping
    assert ev("segment(cp.gap, 0x555500005000)") == "mmap"
    assert ev(f"segment(cp.gap, {ADDR['text']})") == "text"
    # without a known executable nothing is text or bss
    assert ev(f"segment(cp.noexe, {ADDR['text']})") == "lib"
    assert ev(f"segment(cp.noexe, {ADDR['data']})") == "lib-data"
    assert ev(f"segment(cp.noexe, {ADDR['bss']})") == "mmap"


def test_segment_in_a_lab_expression(ev):
    assert ev("fig['obj.text.kind'] == segment(cp.placed, fig['obj.text.addr'])") is True


def test_exe_extent(ev):
    assert ev("exe_extent(cp.start)") == (0x555500000000, 0x555500004000)
    assert ev("exe_extent(cp.noexe)") == (None, None)
    f = functions({})
    assert f["exe_extent"](checkpoint_ns(make_cp("x", exe="/not/mapped"))) == (None, None)


# ---- items, figs ----------------------------------------------------------------

def test_items_groups_by_index_in_numeric_order(ev):
    rows = ev("items('ladder')")
    assert [r.get("i") for r in rows] == [0, 1, 2, 10]
    assert rows[0].as_dict() == {"i": 0, "size": 100, "addr": ADDR["heap"], "where": "heap"}
    assert rows[1].as_dict() == {"i": 1, "size": 200, "where": "heap"}
    assert rows[3].as_dict() == {"i": 10, "size": 1 << 20, "addr": ADDR["mmap"]}
    assert ev("sorted(x.size for x in items('ladder'))") == [100, 200, 4096, 1 << 20]
    assert ev("sum(1 for x in items('ladder') if x.size > 1000 and where(cp.start, x.addr) == 'mmap')") == 1


def test_items_missing_field_is_missing_with_its_full_name(ev):
    with pytest.raises(Missing) as e:
        ev("[x.where for x in items('ladder')]")
    assert str(e.value) == "the lab did not report figure 'ladder.2.where'"
    with pytest.raises(Missing, match="'ladder.1.addr'"):
        ev("items('ladder')[1].addr")


def test_items_of_an_absent_prefix(ev):
    assert ev("items('nothing')") == []
    assert [r.get("i") for r in ev("items('ladders')")] == [5]      # whole first part only
    assert [r.get("i") for r in ev("items('other')")] == [6]


def test_figs(ev):
    assert ev("figs('ladder.0.')") == {"size": 100, "addr": ADDR["heap"], "where": "heap"}
    assert ev("figs('obj.')") == {"text.addr": ADDR["text"], "text.kind": "text"}
    assert ev("figs('zzz')") == {}
    assert ev("len(figs(''))") == len(FIGS)


# ---- messages and the trace ------------------------------------------------------------

def test_message_seq(ev):
    assert ev("message_seq('ladder')") == 3
    assert ev("message_seq('ladder.0.size')") == 5       # the last report
    assert ev("message_seq('maps')") == 1
    assert ev("message_seq('nope')") is None


def test_calls_before(ev):
    # before 'ladder.0.size' (seq 5): the calls after message 4
    assert [e.get("call") for e in ev("calls_before('ladder.0.size')")] == ["mmap"]
    assert ev("arg(calls_before('ladder.0.size')[0], 4)") == 5
    # before 'ladder' (seq 3): after message 2
    assert [e.get("call") for e in ev("calls_before('ladder')")] == ["munmap"]
    assert ev("calls_before('total', 'mmap')")[0].get("ret") == "0x7f0000100000"
    assert ev("calls_before('total', 'brk')") == []
    assert ev("calls_before('nope')") == []


def test_calls_after(ev):
    assert [e.get("call") for e in ev("calls_after('ladder')")] == ["mmap"]
    assert [e.get("call") for e in ev("calls_after('maps')")] == ["mmap", "brk"]
    assert [e.get("call") for e in ev("calls_after('maps', 'brk')")] == ["brk"]
    assert [e.get("call") for e in ev("calls_after('done')")] == []
    assert [e.get("call") for e in ev("calls_after('ladder.0.size')")] == ["munmap"]
    assert ev("calls_after('nope')") == []


def test_between(ev):
    assert [e.get("call") for e in ev("between(1, 3)")] == ["mmap", "brk", "sendto", "munmap"]
    assert [e.get("call") for e in ev("between(1, 3, 'mmap')")] == ["mmap"]
    assert ev("between(3, 3)") == []
    assert [e.get("call") for e in ev("between(0, 99, 'munmap')")] == ["munmap", "munmap"]


@pytest.mark.parametrize("args, i, want", [
    ("NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", 0, "NULL"),
    ("NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", 1, 1052672),
    ("NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", 2, "PROT_READ|PROT_WRITE"),
    ("NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", 4, -1),
    ("NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", 5, 0),
    ("NULL, 1052672, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0", 6, None),
    ("0x7f0000000000, 4096", 0, 0x7f0000000000),
    ("0x7f0000000000, 4096", 1, 4096),
    ("0x7f0000000000,4096", 1, 4096),
    ("", 0, ""),
])
def test_arg(fn, args, i, want):
    got = fn["arg"](NS({"args": args}), i)
    assert got == want and type(got) is type(want)


def test_arg_in_an_expression(ev):
    assert ev("any(arg(e, 0) <= 0x7f0000100800 < arg(e, 0) + arg(e, 1) "
              "for e in calls_after('ladder.0.size', 'munmap'))") is True
    assert ev("[arg(e, 1) for e in calls_before('ladder', 'munmap')]") == [1052672]


# ---- opened ------------------------------------------------------------------------

def test_opened_resolves_directory_descriptors():
    trace = [
        ev_("openat", 'AT_FDCWD, "/proc/self/oom_score", O_RDONLY', "3", 0.5),
        ev_("openat", 'AT_FDCWD, "/proc/self", O_RDONLY|O_PATH|O_DIRECTORY', "4", 0.5),
        ev_("openat", '4, "oom_score_adj", O_RDONLY', "5", 0.5),
        ev_("openat", '4, "../self/./oom_score", O_RDONLY', "6", 0.5),
        ev_("openat", '7, "oom_score", O_RDONLY', "-1", 0.5),           # an fd never seen
        ev_("openat", 'AT_FDCWD, "relative", O_RDONLY', "-1", 0.5),      # cwd unknown
        ev_("openat", 'AT_FDCWD, "/tmp", O_RDONLY|O_DIRECTORY', "4", 0.5),  # fd 4 reused
        ev_("openat", '4, "oom_score", O_RDONLY', "8", 0.5),
        ev_("openat", 'AT_FDCWD, "/proc/self/status", O_RDONLY', "9", 2.5, pid=101),
        ev_("sendto", '3, "cp scores", 9, 0, NULL, 0', "9", 2, msg="cp scores"),
        ev_("openat", 'AT_FDCWD, "/late", O_RDONLY', "10", 2.5),
    ]
    names = {"trace": [NS(e, "trace field") for e in trace],
             "messages": [NS({"seq": 2, "kind": "cp", "name": "scores"}, "message field")]}
    opened = functions(names)["opened"]
    assert opened("scores", 100) == ["/proc/self/oom_score", "/proc/self", "/proc/self/oom_score_adj",
                                     "/proc/self/oom_score", "/tmp", "/tmp/oom_score"]
    assert opened(None, 100)[-1] == "/late"
    assert opened("scores", 101) == []                   # after the checkpoint
    assert opened(None, 101) == ["/proc/self/status"]
    assert "/tmp/oom_score" in opened() and "/proc/self/status" in opened()


def test_opened_follows_chdir_and_fchdir():
    """A lab may chdir into /sys/devices/system/node and open "node1/distance": where
    the run traces chdir and fchdir, the relative path is resolved through them."""
    trace = [
        ev_("openat", 'AT_FDCWD, "early", O_RDONLY', "3", 0.5),                 # cwd unknown
        ev_("chdir", '"/nowhere"', "-1", 0.5),                                   # failed: ignored
        ev_("chdir", '"/sys/devices/system"', "0", 0.5),
        ev_("chdir", '"node"', "0", 0.5),                                        # relative chdir
        ev_("openat", 'AT_FDCWD, "node1/distance", O_RDONLY', "4", 0.5),
        ev_("clone", 'child_stack=NULL, flags=SIGCHLD', "101", 0.5),
        ev_("openat", 'AT_FDCWD, "node0/./distance", O_RDONLY', "3", 0.5, pid=101),  # inherited
        ev_("openat", 'AT_FDCWD, "/proc/self", O_RDONLY|O_DIRECTORY', "5", 0.5),
        ev_("fchdir", "5", "0", 0.5),
        ev_("openat", 'AT_FDCWD, "oom_score", O_RDONLY', "6", 0.5),
        ev_("fchdir", "42", "0", 0.5),                                          # an fd never seen
        ev_("openat", 'AT_FDCWD, "lost", O_RDONLY', "7", 0.5),
    ]
    names = {"trace": [NS(e, "trace field") for e in trace], "messages": []}
    opened = functions(names)["opened"]
    assert opened(None, 100) == ["/sys/devices/system/node/node1/distance", "/proc/self",
                                 "/proc/self/oom_score"]
    assert opened(None, 101) == ["/sys/devices/system/node/node0/distance"]


def test_descriptors_follow_dup_fork_and_close():
    """reads()/writes() name the file behind each descriptor: through dup, dup2, dup3,
    fcntl(F_DUPFD) and fork; a closed number (close, close_range) that the kernel hands
    out again, to a pipe no traced call opened, names no file; execve forgets them all.
    open and openat2 open as openat does. err is a failure's errno name."""
    trace = [
        ev_("open", '"/proc/self/oom_score", O_RDONLY', "3"),
        ev_("read", '3, "667\\n", 24', "4"),
        ev_("close", "3", "0"),
        ev_("read", '3, "go", 15', "2"),                                     # a pipe now
        ev_("openat2", 'AT_FDCWD, "/proc/self/oom_score_adj", {flags=O_WRONLY}, 24', "3"),
        ev_("dup", "3", "7"),
        ev_("dup2", "7, 9", "9"),
        ev_("fcntl", "9, F_DUPFD_CLOEXEC, 20", "20"),
        ev_("fcntl", "9, F_GETFL", "1"),                                     # no new descriptor
        ev_("write", '20, "-200", 4', "-1", err="EACCES"),
        ev_("clone", "child_stack=NULL, flags=SIGCHLD", "101"),
        ev_("write", '9, "1000", 4', "4", pid=101),                          # inherited
        ev_("close_range", "3, 4294967295, 0", "0"),
        ev_("write", '9, "x", 1', "1"),
        ev_("execve", '"/bin/true", ["true"], 0x0 /* 0 vars */', "0", pid=101),
        ev_("write", '9, "y", 1', "1", pid=101),
        ev_("fcntl", "5, F_SETOWN, 101", "0"),
        ev_("fcntl", "5, F_SETSIG, SIGKILL", "0"),
        ev_("kill", "101, 0", "0"),                                          # a probe
        ev_("kill", "101, SIGTERM", "0"),
    ]
    names = {"trace": [NS(e, "trace field") for e in trace], "messages": []}
    fn = functions(names)
    assert [(r.get("path"), r.get("ret_int")) for r in fn["reads"]()] == [("/proc/self/oom_score", 4), (None, 2)]
    adj = "/proc/self/oom_score_adj"
    assert [(w.get("pid"), w.get("path"), w.get("err")) for w in fn["writes"]()] == [
        (100, adj, "EACCES"), (101, adj, ""), (100, None, ""), (101, None, "")]
    assert fn["opened"]() == ["/proc/self/oom_score", adj]
    assert [e.get("args") for e in fn["signals_sent"]()] == [
        "5, F_SETOWN, 101", "5, F_SETSIG, SIGKILL", "101, SIGTERM"]


def test_unmeasured_finds_checkpoints_without_a_reading_of_own_counters():
    """unmeasured(cps): the checkpoints around which the process that sent them read none
    of its own counters (getrusage(), its own /proc stat, status, statm, smaps,
    smaps_rollup): before it, after its message before, or after it, before its next;
    one reading serves one checkpoint. A lab whose figures come from a model has none."""
    msgs = [{"seq": 1, "pid": 100, "kind": "hello", "name": "cow"},
            {"seq": 2, "pid": 100, "kind": "cp", "name": "start"},
            {"seq": 3, "pid": 100, "kind": "fig", "name": "buf"},
            {"seq": 4, "pid": 101, "kind": "cp", "name": "child_start"},
            {"seq": 5, "pid": 100, "kind": "cp", "name": "parent_touched"},
            {"seq": 6, "pid": 101, "kind": "cp", "name": "child_read"},
            {"seq": 7, "pid": 101, "kind": "cp", "name": "child_written"},
            {"seq": 8, "pid": 100, "kind": "cp", "name": "modelled"},
            {"seq": 9, "pid": 100, "kind": "cp", "name": "failed"},
            {"seq": 10, "pid": 100, "kind": "cp", "name": "last"}]
    trace = [
        # before 'start' (measured, then the checkpoint: faults.c's order)
        ev_("getrusage", "RUSAGE_SELF, {ru_utime=...}", "0", 1.5),
        # after 'start', before 'buf': a persistent descriptor, read again later
        ev_("openat", 'AT_FDCWD, "/proc/self/stat", O_RDONLY', "5", 2.5),
        ev_("openat", 'AT_FDCWD, "/proc/1/status", O_RDONLY', "6", 2.5),         # init's
        # the child, after its checkpoint (cow.c's order): its own pid, by number
        ev_("openat", 'AT_FDCWD, "/proc/101/status", O_RDONLY', "3", 4.5, pid=101),
        ev_("read", '3, "Name:\\tcow\\n"..., 4096', "1200", 4.5, pid=101),
        # the child measures once more, after child_written only: child_read has none
        ev_("getrusage", "RUSAGE_THREAD, {ru_utime=...}", "0", 7.5, pid=101),
        # the parent, around 'parent_touched': pread on the descriptor of /proc/self/stat
        ev_("pread64", '5, "123 (cow) R"..., 1024, 0', "300", 4.5),
        # around 'modelled': only others' counters
        ev_("getrusage", "RUSAGE_CHILDREN, {ru_utime=...}", "0", 7.5),
        ev_("read", '6, "Name"..., 1024', "300", 7.5),                       # init's status
        # around 'failed': what failed
        ev_("openat", 'AT_FDCWD, "/proc/self/smaps_rollup", O_RDONLY', "-1", 8.5),
        ev_("read", '5, ""..., 1024', "-1", 8.5),
        # after 'last'
        ev_("getrusage", "RUSAGE_SELF, {ru_utime=...}", "0", 10.5),
    ]
    names = {"trace": [NS(e, "trace field") for e in trace],
             "messages": [NS(m, "message field") for m in msgs],
             "cp": NS({}, "checkpoint")}
    unmeasured = functions(names)["unmeasured"]
    assert unmeasured(["start", "parent_touched", "child_start", "child_written"]) == []
    # the reading after child_start serves one of the two; child_written's its own
    assert unmeasured(["child_start", "child_read", "child_written"]) == ["child_read"]
    assert unmeasured(["start", "parent_touched", "modelled", "failed", "last"]) == \
        ["modelled", "failed"]
    assert unmeasured(["absent", "start"]) == ["absent"]
    assert unmeasured(["last"]) == []


def test_proc_file_knows_a_process_own_proc_folder():
    """proc_file(path, name, cp): the file by any of the paths the process itself may use
    (self, thread-self, its pid as host or namespace sees it, task/<tid>), and no other."""
    cp = NS({"pid": 4242, "nspid": [4242, 7]}, "checkpoint field")
    proc_file = functions({"trace": [], "messages": [], "cp": NS({}, "checkpoint")})["proc_file"]
    for path in ("/proc/self/oom_score", "/proc/thread-self/oom_score", "/proc/4242/oom_score",
                 "/proc/7/oom_score", "/proc/self/task/9/oom_score", "/proc/7/task/7/oom_score"):
        assert proc_file(path, "oom_score", cp), path
    for path in ("/proc/1/oom_score", "/proc/self/oom_score_adj", "/proc/thread-self/task/9/oom_score",
                 "/proc/self/../1/oom_score", "proc/self/oom_score", None):
        assert not proc_file(path, "oom_score", cp), path
    alone = NS({"pid": 5}, "checkpoint field")                 # no namespace pids observed
    assert proc_file("/proc/5/oom_score", "oom_score", alone)
    assert not proc_file("/proc/7/oom_score", "oom_score", alone)


@pytest.mark.parametrize("text, name, said", [
    ("killed by SIGKILL", "SIGKILL", True),
    ("killed by signal 9", "SIGKILL", True),
    ("killed by signal 10 (User defined signal 1)", "SIGUSR1", True),
    ("killed by SIGUSR1 (User defined signal 1)", "SIGUSR1", True),
    ("killed by SIGKILL", "SIGUSR1", False),
    ("killed by signal 9", "SIGTERM", False),
    ("killed by signal 90", "SIGKILL", False),
    ("killed by SIGKILLED", "SIGKILL", False),
    ("completed", "SIGKILL", False),
    (None, "SIGKILL", False),
    ("killed by SIGKILL", "none", False),
])
def test_killed_by_reads_a_fate_in_either_spelling(text, name, said):
    assert killed_by(text, name) is said


def test_ended_is_how_strace_saw_a_process_end(names):
    names = {**names, "_ends": {7: "killed by SIGKILL", 8: "exited with 0"}}
    e = Evaluator(names, functions(names)).eval
    assert e("ended(7)") == "killed by SIGKILL" and e("ended(8)") == "exited with 0"
    assert e("ended(9)") is None and e("ended(None)") is None
