"""Functions that lab.toml expressions may call, beyond the builtins of expr.py.

Each takes plain values or namespaces (a checkpoint is an NS whose `maps` is a
list of VMA namespaces: start, end, size, perms, offset, dev, inode, path, kind).
Add a function here, document it in docs/lab-format.md, and test it in
tests/test_functions.py.
"""

from __future__ import annotations

import posixpath
import re
import signal

from .expr import NS
from .runner import first_string_arg, strace_string

# openat(dirfd, "path", ...) and openat2 as strace prints them; open("path", ...), creat
_OPENAT = re.compile(r'^\s*(AT_FDCWD|-?\d+),\s*"((?:[^"\\]|\\.)*)"')
_OPEN = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"')
# the calls that open a file (strace names): a run that lists them all sees every open
OPEN_CALLS = ["open", "openat", "openat2", "creat"]
# the calls that copy a descriptor (fcntl: F_DUPFD, F_DUPFD_CLOEXEC)
DUP_CALLS = ["dup", "dup2", "dup3", "fcntl"]
# the calls that close one: traced with the opens, a number the kernel hands out again
# (to a pipe, a socket...) is never taken for the file it named before
CLOSE_CALLS = ["close", "close_range"]
# what a run traces to follow its files: OPEN_CALLS + DUP_CALLS + CLOSE_CALLS, and
# chdir/fchdir (a relative name opened after them)
FILE_CALLS = OPEN_CALLS + DUP_CALLS + CLOSE_CALLS + ["chdir", "fchdir"]

# a process's own counters, as a lab reads them (getrusage's aside)
COUNTER_FILES = ("stat", "status", "statm", "smaps", "smaps_rollup")
# the calls that read a file through a descriptor (strace names)
READ_CALLS = ["read", "pread64", "readv", "preadv", "preadv2"]
# the calls that write a file through a descriptor (strace names)
WRITE_CALLS = ["write", "pwrite64", "writev", "pwritev", "pwritev2"]
# a file of a process's own /proc folder: /proc/self/<f>, thread-self, <pid>, task/<tid>
_OWN_PROC = re.compile(r"^/proc/(?:(thread-self)|(self|\d+)(?:/task/\d+)?)/([a-z_]+)$")


def _own_proc_file(path, files, pids) -> bool:
    """Is path one of `files` in the own /proc folder of a process whose pids (as the
    host and its namespaces see it) are `pids` (strings)?"""
    m = _OWN_PROC.match(path or "")
    return bool(m) and m.group(3) in files and (m.group(1) is not None or m.group(2) == "self"
                                                 or m.group(2) in pids)

# the system calls that send a signal (strace names): a lab that lists them in a
# run's strace lets checks see a death the lab caused itself
SIGNAL_CALLS = ["kill", "tgkill", "tkill", "pidfd_send_signal", "rt_sigqueueinfo",
                "rt_tgsigqueueinfo"]
# and those that make the kernel send one later, on I/O (F_SETOWN + O_ASYNC, F_SETSIG)
SIGNAL_SETUP_CALLS = {"fcntl": ("F_SETOWN", "F_SETSIG"), "ioctl": ("FIOSETOWN", "SIOCSPGRP")}

# the groups a run's strace list may name (spec.load expands them), each what one of
# the functions below needs traced: "@files" for a file's path (opened, reads,
# writes, proc_file, unmeasured), "@reads" and "@writes" for its reads and writes,
# "@signals" for signals_sent()
TRACE_GROUPS = {"@files": FILE_CALLS, "@reads": READ_CALLS, "@writes": WRITE_CALLS,
                "@signals": SIGNAL_CALLS + list(SIGNAL_SETUP_CALLS)}


def functions(names: dict) -> dict:
    all_cps = names.get("_all_cps", {})

    def has_cp(name):
        return names["cp"].has(name)

    def anon_kb(cp):
        return sum(v.get("size") for v in cp.get("maps")
                   if v.get("kind") == "anon" and "w" in v.get("perms")) // 1024

    def vma_at(cp, addr):
        if not isinstance(addr, int):
            return None
        for v in cp.get("maps"):
            if v.get("start") <= addr < v.get("end"):
                return v
        return None

    def count_cp(name):
        return len(all_cps.get(name, []))

    def figs(prefix):
        """Figures whose name starts with prefix, as a {rest: value} dict."""
        return {k[len(prefix):]: v for k, v in names["fig"].items() if k.startswith(prefix)}

    def between(a_seq, b_seq, call=None):
        """Traced syscalls after message a_seq and before message b_seq."""
        return [e for e in names["trace"] if a_seq < e.get("at") < b_seq
                and (call is None or e.get("call") == call)]

    def where(cp, addr):
        """The grader's own answer to "what kind of memory holds addr?": heap
        ([heap]), mmap (an anonymous read-write mapping), stack, file, ...,
        or unmapped."""
        v = vma_at(cp, addr)
        if v is None:
            return "unmapped"
        kind = v.get("kind")
        if kind == "anon":
            return "mmap" if v.get("perms").startswith("rw") else "anon-" + v.get("perms")
        return kind

    def exe_extent(cp):
        """(lowest start, highest end) of the mappings of the process's own executable."""
        exe = cp.get("exe")
        mine = [v for v in cp.get("maps") if exe and v.get("path") == exe]
        if not mine:
            return (None, None)
        return (min(v.get("start") for v in mine), max(v.get("end") for v in mine))

    def segment(cp, addr):
        """The grader's name for the part of the address space holding addr: text,
        rodata, data (the executable's mappings by permission), bss (the
        anonymous mapping right after them), heap, stack, mmap (another
        anonymous rw mapping), lib (a shared object's code), lib-data, ...,
        or unmapped."""
        v = vma_at(cp, addr)
        if v is None:
            return "unmapped"
        perms, kind = v.get("perms"), v.get("kind")
        if cp.get("exe") and v.get("path") == cp.get("exe"):
            return "text" if perms[2] == "x" else "data" if perms[1] == "w" else "rodata"
        if kind in ("heap", "stack"):
            return kind
        if kind == "anon":
            if perms.startswith("rw") and v.get("start") == exe_extent(cp)[1]:
                return "bss"
            return "mmap" if perms.startswith("rw") else "anon-" + perms
        if kind == "file":
            return "lib" if perms[2] == "x" else "lib-data"
        return kind

    def items(prefix):
        """Figures named <prefix>.<index>.<field> as a list of namespaces,
        one per index in index order, each with its fields and `i`."""
        rows: dict[int, dict] = {}
        for k, v in names["fig"].items():
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == prefix and parts[1].isdigit():
                rows.setdefault(int(parts[1]), {"i": int(parts[1])})[parts[2]] = v
        return [NS(rows[i], lambda f, i=i: f"the lab did not report figure '{prefix}.{i}.{f}'")
                for i in sorted(rows)]

    def message_seq(name):
        """Position of the message that reported figure or checkpoint `name` (the last one)."""
        seqs = [m.get("seq") for m in names["messages"] if m.get("name") == name]
        if not seqs:
            return None
        return seqs[-1]

    def calls_before(name, call=None):
        """Traced system calls made just before the message `name` (after the one before it)."""
        seq = message_seq(name)
        if seq is None:
            return []
        return [e for e in names["trace"] if e.get("at") == seq - 0.5
                and (call is None or e.get("call") == call)]

    def calls_after(name, call=None):
        """Traced system calls made just after the message `name` (before the next one)."""
        seq = message_seq(name)
        if seq is None:
            return []
        return [e for e in names["trace"] if e.get("at") == seq + 0.5
                and (call is None or e.get("call") == call)]

    def cp_seq(name):
        """Position of the first checkpoint of that name (after everything if none)."""
        seqs = [m.get("seq") for m in names["messages"] if m.get("kind") == "cp" and m.get("name") == name]
        return min(seqs) if seqs else 10 ** 12

    def calls(call, before=None, pid=None):
        """Traced calls named `call` (a name or a list), made before the first
        checkpoint `before` (if given), by process `pid` (if given)."""
        wanted = [call] if isinstance(call, str) else list(call)
        limit = cp_seq(before) if before else 10 ** 12
        return [e for e in names["trace"] if e.get("call") in wanted and e.get("at") < limit
                and (pid is None or e.get("pid") == pid)]

    cache: dict = {}

    def _file_ops():
        """(event, absolute normalized path or None) of each traced open (OPEN_CALLS), and
        of each read or write through a descriptor an open returned, in order (worked out
        once). Descriptors follow dup/dup2/dup3/fcntl(F_DUPFD), close and fork, where
        traced (a run lists FILE_CALLS), and are forgotten at execve."""
        if "file_ops" in cache:
            return cache["file_ops"]
        file_ops = cache["file_ops"] = []
        fds: dict = {}
        cwd: dict = {}          # where the run traces chdir/fchdir: each process's folder
        for e in names["trace"]:
            call, who, ret = e.get("call"), e.get("pid"), e.get("ret_int")
            if call in ("clone", "clone3", "fork", "vfork") and ret is not None and ret > 0:
                if who in cwd:
                    cwd[ret] = cwd[who]         # a child starts where its parent is
                for (owner, fd), path in list(fds.items()):
                    if owner == who:
                        fds[(ret, fd)] = path   # and with its parent's descriptors
                continue
            if call == "close" and ret == 0:
                fds.pop((who, (e.get("args") or "").strip()), None)
                continue
            if call == "close_range":
                a = [x.strip() for x in (e.get("args") or "").split(",")]
                if ret == 0 and len(a) >= 2 and "CLOEXEC" not in (e.get("args") or ""):
                    try:
                        lo, hi = int(a[0], 0), int(a[1], 0)
                    except ValueError:
                        lo, hi = 0, 2 ** 32
                    for key in [k for k in fds if k[0] == who and k[1].isdigit() and lo <= int(k[1]) <= hi]:
                        del fds[key]
                continue
            if call == "execve" and ret == 0:
                for key in [k for k in fds if k[0] == who]:
                    del fds[key]        # what it knew of its descriptors is not known now
                continue
            if call in DUP_CALLS:
                a = [x.strip() for x in (e.get("args") or "").split(",")]
                if ret is not None and ret >= 0 and a and (call != "fcntl" or
                                                           (len(a) > 1 and a[1].startswith("F_DUPFD"))):
                    fds[(who, str(ret))] = fds.get((who, a[0]))
                continue
            if call in ("chdir", "fchdir") and ret == 0:
                if call == "chdir":
                    where = first_string_arg(e.get("args"))
                    if where and not where.startswith("/"):
                        where = f"{cwd[who]}/{where}" if who in cwd else None
                else:
                    where = fds.get((who, (e.get("args") or "").strip()))
                if where:
                    cwd[who] = posixpath.normpath(where)
                else:
                    cwd.pop(who, None)          # somewhere it cannot tell
                continue
            if call in READ_CALLS or call in WRITE_CALLS:
                fd = (e.get("args") or "").split(",", 1)[0].strip()
                file_ops.append((e, fds.get((who, fd))))
                continue
            if call not in OPEN_CALLS:
                continue
            if call in ("open", "creat"):
                m = _OPEN.match(e.get("args") or "")
                dirfd, path = ("AT_FDCWD", strace_string(m.group(1))) if m else (None, None)
            else:
                m = _OPENAT.match(e.get("args") or "")
                dirfd, path = (m.group(1), strace_string(m.group(2))) if m else (None, None)
            if path is None:
                continue
            if not path.startswith("/"):
                base = cwd.get(who) if dirfd == "AT_FDCWD" else fds.get((who, dirfd))
                path = f"{base}/{path}" if base else None
            if path is not None:
                path = posixpath.normpath(path)
                if ret is not None and ret >= 0:
                    fds[(who, str(ret))] = path
            file_ops.append((e, path))
        return file_ops

    def opened(before=None, pid=None):
        """The paths the lab's processes opened (openat, traced), before checkpoint
        `before`, by process `pid`: absolute and normalized, a path relative to a
        directory descriptor resolved through the openat that returned it
        (openat(3, "oom_score") after openat(AT_FDCWD, "/proc/self") = 3), or through
        the folder the process chdir/fchdir-ed to (where the run traces them; a child
        starts in its parent's)."""
        limit = cp_seq(before) if before else 10 ** 12
        return [path for e, path in _file_ops() if e.get("call") in OPEN_CALLS and path is not None
                and e.get("at") < limit and (pid is None or e.get("pid") == pid)]

    def _measures(who):
        """The traced calls by which process `who` read its own counters: getrusage
        (RUSAGE_SELF or RUSAGE_THREAD), and successful reads of its own /proc/self
        (thread-self, <pid>) stat, status, statm, smaps or smaps_rollup (the kernel
        writes their figures when they are read, not when they are opened)."""
        selves = {str(who)}
        for cp_name in {m.get("name") for m in names["messages"] if m.get("kind") == "cp"}:
            if names["cp"].has(cp_name) and names["cp"].get(cp_name).get("pid") == who:
                selves |= _pids(names["cp"].get(cp_name))
        return ([e for e in names["trace"] if e.get("pid") == who and e.get("call") == "getrusage"
                 and (e.get("args") or "").startswith(("RUSAGE_SELF", "RUSAGE_THREAD"))] +
                [e for e, path in _file_ops() if e.get("pid") == who and e.get("call") in READ_CALLS
                 and _own_proc_file(path, COUNTER_FILES, selves)
                 and e.get("ret_int") is not None and e.get("ret_int") > 0])

    def _pids(cp):
        """The pids of the process that sent checkpoint cp, as strings: the host's and,
        where it has them, its namespaces'."""
        return {str(cp.get("pid"))} | ({str(n) for n in cp.get("nspid") or []} if cp.has("nspid") else set())

    def unmeasured(checkpoints):
        """Those of these checkpoints around which the lab did not read its own counters.
        Each checkpoint (the first of its name) needs a reading of its own by the process
        that sent it (_measures), just before it (after that process's message before) or
        just after it (before its next message); one reading never serves two
        checkpoints. A lab whose figures come from a model, not from the kernel, has
        none. Empty: every one was measured."""
        msgs = names["messages"]
        first = {}
        for m in msgs:
            if m.get("kind") == "cp" and m.get("name") in checkpoints and m.get("name") not in first:
                first[m.get("name")] = m
        missing = [c for c in checkpoints if c not in first]
        for who in sorted({m.get("pid") for m in first.values()}):
            seqs = sorted(m.get("seq") for m in msgs if m.get("pid") == who)
            bounds = [0, *seqs, 10 ** 12]
            ats = [e.get("at") for e in _measures(who)]
            measured = {i for i in range(len(bounds) - 1)
                        if any(bounds[i] < at < bounds[i + 1] for at in ats)}
            used: set = set()
            for m in sorted((m for m in first.values() if m.get("pid") == who), key=lambda m: m.get("seq")):
                k = seqs.index(m.get("seq"))        # the gaps before and after it: k and k + 1
                gap = next((g for g in (k, k + 1) if g in measured and g not in used), None)
                if gap is None:
                    missing.append(m.get("name"))
                else:
                    used.add(gap)
        return [c for c in checkpoints if c in missing]

    def _io(kinds, before, pid, what):
        limit = cp_seq(before) if before else 10 ** 12
        return [NS({"call": e.get("call"), "args": e.get("args"), "ret": e.get("ret"),
                    "ret_int": e.get("ret_int"), "err": e.get("err") if e.has("err") else "", "pid": e.get("pid"),
                    "at": e.get("at"), "path": path}, what)
                for e, path in _file_ops() if e.get("call") in kinds
                and e.get("at") < limit and (pid is None or e.get("pid") == pid)]

    def writes(before=None, pid=None):
        """The lab's traced writes (write, pwrite64, writev, pwritev...), before
        checkpoint `before`, by process `pid`: namespaces with call, args, ret, ret_int,
        err (a failure's errno name, else ""), pid, at and `path`, the file the
        descriptor was opened on (None when not seen)."""
        return _io(WRITE_CALLS, before, pid, "write field")

    def reads(before=None, pid=None):
        """The lab's traced reads (read, pread64, readv, preadv...), as writes() gives
        its writes."""
        return _io(READ_CALLS, before, pid, "read field")

    def proc_file(path, name, cp):
        """Is path the file `name` of the own /proc folder of the process that sent
        checkpoint cp: /proc/self/<name>, /proc/thread-self/<name>, /proc/<its pid, as
        it sees it>/<name>, or any of those under task/<tid>/?"""
        return _own_proc_file(path, (name,), _pids(cp))

    def signals_sent(before=None):
        """Signals the lab's processes sent themselves (strace), before checkpoint `before`:
        the kill family (with a signal, not 0), and the calls that ask the kernel to send
        one on I/O (fcntl F_SETOWN/F_SETSIG, ioctl FIOSETOWN/SIOCSPGRP), where traced."""
        return [e for e in calls(SIGNAL_CALLS + list(SIGNAL_SETUP_CALLS), before)
                if ("SIG" in e.get("args") if e.get("call") in SIGNAL_CALLS
                    else any(k in e.get("args") for k in SIGNAL_SETUP_CALLS[e.get("call")]))]

    def arg(event, i):
        """The i-th argument of a traced call, as an int when it is one (else text)."""
        parts = [a.strip() for a in event.get("args").split(",")]
        if i >= len(parts):
            return None
        try:
            return int(parts[i], 0)
        except ValueError:
            return parts[i]

    def ended(pid):
        """How process pid ended, as strace saw it: "killed by SIGKILL", "exited with 0";
        None if the run was not traced or the process did not end while traced."""
        try:
            return names.get("_ends", {}).get(int(pid))
        except (TypeError, ValueError):
            return None

    return {"has_cp": has_cp, "anon_kb": anon_kb, "vma_at": vma_at, "count_cp": count_cp,
            "figs": figs, "between": between, "where": where, "items": items,
            "message_seq": message_seq, "calls_before": calls_before,
            "calls_after": calls_after, "arg": arg, "segment": segment,
            "cp_seq": cp_seq, "calls": calls, "signals_sent": signals_sent, "opened": opened,
            "unmeasured": unmeasured, "writes": writes, "reads": reads, "proc_file": proc_file,
            "exe_extent": exe_extent, "killed_by": killed_by, "ended": ended}


def killed_by(text, name) -> bool:
    """Whether a lab's words for how a process ended say: killed by the signal called
    `name` ("SIGKILL"). Either "killed by SIGKILL" or "killed by signal 9", each
    possibly followed by " (" and the signal's description (strsignal)."""
    try:
        number = int(signal.Signals[str(name)])
    except KeyError:
        return False
    text = str(text or "")
    for said in (f"killed by {name}", f"killed by signal {number}"):
        if text == said or text.startswith(said + " ("):
            return True
    return False
