"""Run one lab program under observation (the grader side of docs/contract.md).

The lab gets one end of an AF_UNIX SOCK_SEQPACKET socket (MEMLAB_FD). The kernel
stamps every message with the sender's pid (SCM_CREDENTIALS), so the grader
knows which process, parent or forked child, speaks. At each checkpoint the
grader waits until that process sits in recv(), reads its /proc files and any
declared memory captures, then answers "go".

Everything the lab does is bounded: wall-clock time, output size, message count;
whatever it leaves behind is killed (the grader is a child subreaper, so orphans
come back to it).
"""

from __future__ import annotations

import array
import ctypes
import math
import os
import platform
import re
import select
import selectors
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from . import env as envmod
from . import procfs

OUTPUT_KEEP = 256 * 1024          # bytes of each stream kept for the log and the checks
OUTPUT_LIMIT = 16 * 1024 * 1024   # more than this in total is a flood: the run is stopped
MESSAGE_LIMIT = 200_000
TRACE_LIMIT = 64 * 1024 * 1024    # strace's output: past this the run is stopped (a syscall flood)
CTL_BATCH = 256                   # control messages read per wakeup, at most
HOLD_WAIT = 2.0                   # seconds a checkpoint may take to block in recv()
SWEEP_GRACE = 0.5                 # seconds the streams may stay open after the lab exits
FIG_RE = re.compile(r"^[a-z0-9_.]{1,64}$")
LAB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "HOME": "/tmp"}


@dataclass
class Checkpoint:
    name: str
    seq: int                 # position among all messages of the run
    pid: int
    role: str                # "main" (the process that said hello) or "child"
    held: bool | None        # was it really waiting while we looked? None: could not tell
    obs: dict = field(default_factory=dict)
    error: str = ""
    t: float = 0.0


@dataclass
class Message:
    seq: int
    pid: int
    kind: str                # hello, fig, cp, junk
    name: str
    value: object = None


@dataclass
class RunResult:
    name: str
    argv: list[str]
    exit: int | None = None          # exit status when it exited
    signal: int | None = None        # the signal that killed it
    limit: str = ""                  # "time", "output", "messages", "trace", "untraced": what ended it
    error: str = ""                  # could not start, ...
    duration: float = 0.0
    rusage: dict = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    out_bytes: int = 0
    main_pid: int | None = None
    lab_name: str = ""
    messages: list[Message] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    captures: dict = field(default_factory=dict)
    trace: list[dict] = field(default_factory=list)
    ends: dict = field(default_factory=dict)  # pid -> "killed by SIGKILL", "exited with 0" (strace)
    end: str = ""                    # how the lab's own process ended, as strace saw it
    leftovers: int = 0
    junk: int = 0
    limit_text: str = ""             # a sandbox's words for its limit ("stopped: memory limit ...")
    sandbox: dict = field(default_factory=dict)   # what the sandbox measured (grader/sandbox.py)

    def describe(self) -> str:
        """How the run ended, in words."""
        if self.error:
            return self.error
        if self.limit_text:
            return self.limit_text
        if self.limit == "time":
            return f"stopped at the time limit ({self.duration:.1f} s)"
        if self.limit == "output":
            return f"stopped: output flood (more than {OUTPUT_LIMIT // (1024 * 1024)} MiB)"
        if self.limit == "messages":
            return f"stopped: more than {MESSAGE_LIMIT} grader messages"
        if self.limit == "untraced":
            return ("its system calls escaped the trace (a child made with CLONE_UNTRACED, "
                    "which strace cannot follow): what it did cannot be checked")
        if self.limit == "trace":
            return f"stopped: system-call flood (its trace passed {TRACE_LIMIT // (1024 * 1024)} MiB)"
        if self.signal:
            return f"killed by {signal.Signals(self.signal).name}" + (
                " (memory exhausted?)" if self.signal == signal.SIGKILL else "")
        if self.exit:
            return f"exited with status {self.exit}"
        return "completed"

    @property
    def ok(self) -> bool:
        return not self.error and not self.limit and self.signal is None and self.exit == 0


def parse_value(text: str):
    """A figure's value: int (decimal or 0x hex), finite float, else the text itself.

    NaN and infinities stay text: NaN compares false with everything, so as a
    number it would "agree" with any observation."""
    t = text.strip()
    try:
        return int(t, 0)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        return t
    return v if math.isfinite(v) else t


def set_subreaper() -> bool:
    """Make orphans of our runs our children, so that none escapes the sweep."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0   # PR_SET_CHILD_SUBREAPER
    except OSError:
        return False


# signals a lab must meet with their default action (a grader's capture may send one,
# labs/oom): an ignore inherited from whoever started the grader would pass to the lab
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM")


def default_signals() -> None:
    """Undo an inherited 'ignore' of DEFAULT_SIGNALS (whoever started the grader), which
    every lab would inherit in turn. Only an ignore: a handler of ours stays."""
    for name in DEFAULT_SIGNALS:
        sig = signal.Signals[name]
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        except ValueError:      # not the main thread: leave it
            pass


def _children(exclude=frozenset()) -> list[tuple[int, str]]:
    """(pid, comm) of every child of ours but those in exclude (orphans reparented to
    us, the subreaper, included)."""
    me = os.getpid()
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            text = procfs.read(int(entry), "stat")
            if procfs.parse_stat(text)["ppid"] == me:
                kids.append((int(entry), text[text.find("(") + 1:text.rfind(")")]))
        except procfs.ProcError:
            continue
    return kids


def sweep_children(exclude: set[int] = frozenset()) -> int:
    """Kill and reap every child of ours (orphans reparented to us included): how many
    were the lab's (bubblewrap's own init, which comes back to us when bwrap exits
    before it, is killed and reaped too, but not counted)."""
    killed = 0
    for _ in range(50):
        kids = _children(exclude)
        if not kids:
            break
        for pid, comm in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += comm != "bwrap"
            except ProcessLookupError:
                pass
        for pid, _ in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return killed


def _strace_argv(calls: list[str], out: str) -> list[str]:
    """strace around a command: the calls asked for, the lab's sends (to place calls
    among its messages) and TREE_CALLS (to know its processes); only those stop the
    lab where this strace has --seccomp-bpf (env feature strace_seccomp)."""
    wanted = sorted(set(calls) | {"sendto", "sendmsg"} | set(TREE_CALLS))
    seccomp = ["--seccomp-bpf"] if envmod.feature("strace_seccomp").ok else []
    # -q, not -qq, and every signal but SIGCHLD: strace then writes how each process
    # ended ("+++ killed by SIGKILL +++" is written only for a signal of that set)
    return ["strace", "-f", *seccomp, "-q", "-o", out, "-s", "300", "-e", "signal=!SIGCHLD",
            "-e", "trace=" + ",".join("?" + c for c in wanted), "--"]   # ?: a call this
    # architecture lacks (open, creat on arm64) is no error


_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)\)\s+=\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
# how a process ended, as strace -q reports it (the tracer sees it before any parent)
_ENDED = re.compile(r"^\+\+\+ (exited with -?\d+|killed by SIG[A-Z0-9]+)(?: \(core dumped\))? \+\+\+$")
_PROTOCOL = re.compile(r"^(hello|fig|cp) ")
_STRACE_MSG = re.compile(r'^\d+, "((?:[^"\\]|\\.)*)"')
_STRACE_IOV = re.compile(r'iov_base="((?:[^"\\]|\\.)*)"')


def parse_strace(text: str, channel_fd: int | None = None) -> list[dict]:
    """strace -f output to events: {pid, call, args, ret, msg?, at} in order; how a
    process ended is an event with call "+++" and ret "killed by SIGKILL" or
    "exited with 0".

    `at` places each call among the messages the grader received: messages sent
    before it + 0.5 (a message's own send has `at` = its position). With
    `channel_fd` (the lab's MEMLAB_FD), every successful send on it counts, junk
    included, as the grader numbers them; without, sends that look like protocol
    messages do."""
    events, pending = [], {}
    for line in text.splitlines():
        m = _STRACE_LINE.match(line)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        e = _ENDED.match(rest)
        if e:       # an end, not a call: call "+++", its words in ret
            events.append({"pid": pid, "call": "+++", "args": "", "ret": e.group(1), "err": "",
                           "ret_int": None})
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        r = _RESUMED.match(rest)
        if r:
            rest = pending.pop(pid, r.group(1) + "(") + r.group(2)
        c = _CALL.match(rest)
        if not c:
            continue
        name, args = c.group(1), c.group(2)
        parts = c.group(3).split() if c.group(3) else []
        ret = parts[0] if parts else ""
        # a failure's errno ("-1 EACCES (Permission denied)"), else ""
        err = parts[1] if ret == "-1" and len(parts) > 1 and parts[1].startswith("E") else ""
        ev = {"pid": pid, "call": name, "args": args, "ret": ret, "err": err}
        try:
            ev["ret_int"] = int(ret, 0)
        except ValueError:
            ev["ret_int"] = None
        if name in ("sendto", "sendmsg"):
            mm = _STRACE_MSG.match(args) if name == "sendto" else _STRACE_IOV.search(args)
            if mm:
                ev["msg"] = strace_string(mm.group(1))
        events.append(ev)
    # place each syscall among the protocol messages: `at` = messages sent before it + 0.5
    sent = 0
    for ev in events:
        if _sent_message(ev, channel_fd):
            sent += 1
            ev["at"] = sent
        else:
            ev["at"] = sent + 0.5
    return events


def _sent_message(ev: dict, channel_fd: int | None) -> bool:
    if channel_fd is None:
        return bool(_PROTOCOL.match(ev.get("msg", "")))
    return (ev["call"] in ("sendto", "sendmsg") and ev["ret_int"] is not None and ev["ret_int"] >= 0
            and ev["args"].split(",", 1)[0].strip() == str(channel_fd))


class _Streams:
    def __init__(self):
        self.buf = {"stdout": bytearray(), "stderr": bytearray()}
        self.total = 0

    def add(self, which: str, data: bytes):
        self.total += len(data)
        b = self.buf[which]
        if len(b) < OUTPUT_KEEP:
            b.extend(data[: OUTPUT_KEEP - len(b)])

    def text(self, which: str) -> str:
        t = self.buf[which].decode("utf-8", "replace")
        if self.total > OUTPUT_KEEP and len(self.buf[which]) >= OUTPUT_KEEP:
            t += f"\n[... output cut at {OUTPUT_KEEP // 1024} KiB; {self.total} bytes in all]\n"
        return t


def execute(name: str, argv: list[str], *, env: dict | None = None, timeout: float = 30.0,
            strace: list[str] | None = None, norandom: bool = False,
            on_checkpoint: Callable[[RunResult, Checkpoint], None] | None = None,
            wrap: Callable[[list[str]], list[str]] | None = None,
            cwd: str | None = None, sandbox=None, needs=()) -> RunResult:
    """Run argv once, observing it. Never raises for anything the lab does.

    With a sandbox (grader/sandbox.py: `sandbox=sb`, or `wrap=sb.wrap`) the run gets a
    fresh cgroup and the sandbox's command line, the work folder and the lab
    binary's folder are shown at their own paths inside, and the sandbox says which
    of its limits ended the run. `needs`: the features the lab requires (memcg, ...)."""
    sb = sandbox if sandbox is not None else getattr(wrap, "__self__", None)
    if sb is None or not hasattr(sb, "begin_run"):
        return _execute(name, argv, env=env, timeout=timeout, strace=strace, norandom=norandom,
                        on_checkpoint=on_checkpoint, wrap=wrap, cwd=cwd)
    if not sb.active:          # an unsafe "sandbox" (none could be set up): run as is
        return _execute(name, argv, env=env, timeout=timeout, strace=strace, norandom=norandom,
                        on_checkpoint=on_checkpoint, cwd=cwd)
    scratch = os.environ.get("MEMLAB_SCRATCH")
    workdir = cwd or tempfile.mkdtemp(prefix="memlab-run-", dir=scratch if scratch and
                                      sb._reachable(scratch) else None)
    res = None
    try:
        sb.begin_run(workdir=workdir, binary=argv[0] if argv else None, needs=needs)
        res = _execute(name, argv, env=env, timeout=timeout, strace=strace, norandom=norandom,
                       on_checkpoint=on_checkpoint, cwd=workdir, sandbox=sb)
    except Exception as e:  # noqa: BLE001 - the sandbox failed (SandboxError, OSError): that run's error
        res = RunResult(name=name, argv=list(argv), error=f"the sandbox could not be set up: {e}")
    finally:
        sb.end_run(res)
        if not cwd:
            _rmtree(workdir)
    return res


def _execute(name: str, argv: list[str], *, env: dict | None = None, timeout: float = 30.0,
             strace: list[str] | None = None, norandom: bool = False,
             on_checkpoint: Callable[[RunResult, Checkpoint], None] | None = None,
             wrap: Callable[[list[str]], list[str]] | None = None,
             cwd: str | None = None, sandbox=None) -> RunResult:
    argv = list(argv)
    if norandom:
        argv = ["setarch", platform.machine(), "-R"] + argv
    program = argv[0] if argv else ""
    tracefile = None
    if strace:
        # a private file of the grader's; in the sandbox, strace runs outside it (as
        # the grader, around the whole sandbox), so the lab can neither reach its
        # trace nor write into it
        fd, tracefile = tempfile.mkstemp(prefix="memlab-strace-")
        os.close(fd)
        if sandbox is None:
            argv = _strace_argv(strace, tracefile) + argv
    if wrap and sandbox is None:
        argv = wrap(argv)
    res = RunResult(name=name, argv=argv)

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    lab_env = dict(LAB_ENV)
    if os.environ.get("MEMLAB_SCRATCH"):   # a disk-backed directory (the QEMU guest sets one)
        lab_env["MEMLAB_SCRATCH"] = os.environ["MEMLAB_SCRATCH"] if sandbox is None else cwd
    lab_env.update(env or {})
    lab_fd = theirs.fileno()
    lab_env["MEMLAB_FD"] = str(lab_fd)
    workdir = cwd or tempfile.mkdtemp(prefix="memlab-run-")
    set_subreaper()
    default_signals()
    t0 = time.monotonic()
    try:
        if sandbox is None:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),), env=lab_env,
                                    cwd=workdir, start_new_session=True)
        else:
            cmd = sandbox.wrap(argv, lab_env)
            if strace:
                cmd = _strace_argv(strace, tracefile) + cmd
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=(theirs.fileno(),) + sandbox.pass_fds(),
                                    env=sandbox.popen_env(), cwd=workdir, start_new_session=True)
            sandbox.started(proc.pid)
    except OSError as e:
        theirs.close()
        ours.close()
        res.error = f"could not start {argv[0]}: {e.strerror}"
        if tracefile:
            os.unlink(tracefile)
        if not cwd:
            _rmtree(workdir)
        return res
    theirs.close()
    pidfd = os.pidfd_open(proc.pid)
    streams = _Streams()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    sel.register(ours, selectors.EVENT_READ, "ctl")
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    deadline = t0 + timeout
    exited_at = None
    open_streams = 3
    seq = 0
    # strace around a bare run lives as long as anything it traces: when the lab's own
    # process ends, what it left behind is ended after the grace (as bubblewrap's init
    # ends it in the sandbox, and as the sweep ends it in an untraced run), so that a
    # leftover never turns a finished run into a time limit
    watch = _LabWatch(proc.pid) if strace and sandbox is None else None

    def stop(reason: str):
        res.limit = reason
        _kill_group(proc.pid)

    ctl_open = [True]

    def read_ctl(batch: int, until: float | None = None):
        """Handle up to `batch` queued control messages (never blocks on the channel;
        a checkpoint waits for its sender at most until `until`, the run's deadline)."""
        nonlocal seq, open_streams
        for _ in range(batch):
            try:
                data, anc, _, _ = ours.recvmsg(512, ANCILLARY, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, anc = None, []
            reply_fd = _take_fds(anc)      # a checkpoint's answer pipe, if any
            if data == b"" and not _hung_up(ours):
                data = b" "     # an empty packet, not the end of the channel: junk
            if not data:
                _close(reply_fd)
                sel.unregister(ours)
                ctl_open[0] = False
                open_streams -= 1
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS and len(cdata) >= 12:
                    pid = struct.unpack("3i", cdata[:12])[0]
            seq += 1
            if seq > MESSAGE_LIMIT:
                _close(reply_fd)
                if not res.limit:
                    stop("messages")
                continue
            try:
                _handle(res, ours, seq, pid, data, t0, deadline if until is None else until,
                        on_checkpoint, reply_fd)
            finally:
                _close(reply_fd)

    while open_streams > 0 or exited_at is None:
        now = time.monotonic()
        if now >= deadline and not res.limit:
            stop("time")
        if sandbox is not None and not res.limit and exited_at is None:
            why = sandbox.poll()        # the work folder's size
            if why:
                stop(why)
            elif tracefile and _size(tracefile) > TRACE_LIMIT:
                stop("trace")           # strace runs outside the sandbox's limits
        if exited_at is not None and now - exited_at > SWEEP_GRACE:
            break       # something the lab left behind holds our pipes open
        wait = min(deadline - now, 0.1) if exited_at is None else 0.05
        if watch is not None and exited_at is None:
            wait = min(wait, watch.step(sel, now))
        for key, _ in sel.select(timeout=max(wait, 0.001)):
            what = key.data
            if what == "exit":
                sel.unregister(pidfd)
                exited_at = time.monotonic()
                continue
            if what == "lab-exit":
                watch.ended(sel, time.monotonic())
                continue
            if what in ("stdout", "stderr"):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                streams.add(what, data)
                if streams.total > OUTPUT_LIMIT and not res.limit:
                    stop("output")
                continue
            # the control channel: take what is queued, a bounded batch per wakeup
            # (one select() per message halves the rate a flood is read at)
            read_ctl(CTL_BATCH)
        if res.limit and exited_at is None:
            # killed: wait for the exit notice (without reaping: wait4 below
            # collects the status and rusage), but don't hang on stuck streams
            select.select([pidfd], [], [], 5)
            exited_at = time.monotonic()
    if ctl_open[0] and not res.limit:
        # what the lab sent before it exited is still queued when a leftover holding
        # our pipes ended the loop early: read it (bounded: a leftover may still send)
        read_ctl(4096, until=time.monotonic())
    sel.close()
    os.close(pidfd)
    _kill_group(proc.pid)
    try:
        _, status, ru = os.wait4(proc.pid, 0)
        if os.WIFEXITED(status):
            res.exit = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            res.signal = os.WTERMSIG(status)
        res.rusage = {"minflt": ru.ru_minflt, "majflt": ru.ru_majflt, "maxrss_kb": ru.ru_maxrss,
                      "utime": ru.ru_utime, "stime": ru.ru_stime}
    except ChildProcessError:
        pass
    res.duration = time.monotonic() - t0
    res.leftovers = sweep_children() + (watch.swept if watch is not None else 0)
    if watch is not None:
        watch.close()
    for s in (proc.stdout, proc.stderr):
        s.close()
    ours.close()
    res.stdout, res.stderr = streams.text("stdout"), streams.text("stderr")
    res.out_bytes = streams.total
    if tracefile:
        try:
            tree = lab_tree(parse_strace(_read_trace(tracefile), lab_fd), program)
            if any(e["call"] in ("clone", "clone3") and "CLONE_UNTRACED" in e["args"] for e in tree):
                res.limit = res.limit or "untraced"     # a child strace could not follow
            wanted = set(strace) | {"sendto", "sendmsg"}
            res.trace = [e for e in tree if e["call"] in wanted]
            res.ends = {e["pid"]: e["ret"] for e in tree if e["call"] == "+++"}
            root = _lab_root(tree, program)     # the process that exec'd the lab
            if root is not None:
                res.end = res.ends.get(tree[root]["pid"], "")
        finally:
            try:
                os.unlink(tracefile)
            except OSError:
                pass
    if not cwd:
        _rmtree(workdir)
    return res


class _LabWatch:
    """The lab's own process under a bare strace (strace's only child), watched through
    a pidfd; SWEEP_GRACE after it ends, every process it left behind (reparented to
    the grader, the subreaper) is killed, so that strace, which waits for all it
    traces, ends with the lab's status. A lab that ended before it was seen is known
    by what it left: strace without a child while the grader has other children."""

    QUICK = 0.5     # seconds of close watching for strace's child after the start

    def __init__(self, tracer: int):
        self.tracer = tracer
        self.fd = None
        self.since = time.monotonic()
        self.ended_at = None
        self.swept = 0
        self.done = False

    def step(self, sel, now: float) -> float:
        """Called on each turn of the run's loop: how long the loop may wait."""
        if self.done:
            return 1.0
        if self.ended_at is None and self.fd is None:
            kid = _first_child(self.tracer)
            if kid is not None:
                try:
                    self.fd = os.pidfd_open(kid)
                    sel.register(self.fd, selectors.EVENT_READ, "lab-exit")
                except OSError:
                    self.fd = None
                return 0.1 if self.fd is not None else 0.005
            if not _children(exclude={self.tracer}):     # no orphan of the lab's
                return 0.005 if now - self.since < self.QUICK else 0.1
            self.ended_at = now     # it ended before it was seen, leaving processes behind
        if self.ended_at is None:
            return 0.1
        if now - self.ended_at >= SWEEP_GRACE:
            self.swept += sweep_children(exclude={self.tracer})
            self.done = True
            return 0.05
        return self.ended_at + SWEEP_GRACE - now

    def ended(self, sel, now: float) -> None:
        sel.unregister(self.fd)
        self.ended_at = now

    def close(self) -> None:
        _close(self.fd)
        self.fd = None


def _first_child(pid: int) -> int | None:
    """A child of pid (strace has one: the command it runs), or None."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


# always traced too: to tell the lab's processes from the sandbox's own (the wrapper,
# bubblewrap and its init, when strace runs around the sandbox), and to see a child
# made with CLONE_UNTRACED, which strace cannot follow
TREE_CALLS = ["execve", "clone", "clone3", "fork", "vfork"]


def lab_tree(events: list[dict], program: str) -> list[dict]:
    """The events of the lab's processes only: the process that exec'd `program`
    (from its execve on) and every process that first appears after that execve.
    Around a sandbox, strace also sees the wrapper and bubblewrap; its pids are the
    host's (it ran outside the sandbox's pid namespace)."""
    root_at = _lab_root(events, program)
    if root_at is None:         # never seen: keep it all (a check may then fail, never pass)
        return list(events)
    root = events[root_at]["pid"]
    before = {e["pid"] for e in events[:root_at]} - {root}
    return [e for e in events[root_at:] if e["pid"] not in before]


def _lab_root(events: list[dict], program: str) -> int | None:
    """The index of the successful execve of `program` (by its base name), or None."""
    name = os.path.basename(program)
    return next((i for i, e in enumerate(events) if e["call"] == "execve" and e["ret"] == "0"
                 and (first_string_arg(e["args"]) or "").rsplit("/", 1)[-1] == name), None)


_FIRST_STRING = re.compile(r'\s*"((?:[^"\\]|\\.)*)"')


def strace_string(text: str) -> str:
    """A string as strace prints it, between its quotes, with its escapes undone."""
    return text.encode().decode("unicode_escape", "replace")


def first_string_arg(args: str) -> str | None:
    """The first argument of a traced call when it is a string (execve's path, chdir's
    folder), unescaped; None when it is not."""
    m = _FIRST_STRING.match(args or "")
    return strace_string(m.group(1)) if m else None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _read_trace(path: str, limit: int = TRACE_LIMIT) -> str:
    """strace's output file: a regular file (never through a symbolic link the lab
    may have put in its place), at most `limit` bytes; "" if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return f.read(limit).decode("utf-8", "replace")


# room for the sender's credentials and a few descriptors (a checkpoint sends one;
# any beyond what fits are closed by the kernel, the extra ones we get, by us)
ANCILLARY = socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 4)


def _take_fds(anc) -> int | None:
    """The first descriptor passed with a message; any others are closed at once."""
    fds: list[int] = []
    for level, typ, cdata in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(cdata[: len(cdata) - len(cdata) % a.itemsize])
            fds.extend(a)
    for fd in fds[1:]:
        _close(fd)
    return fds[0] if fds else None


def _close(fd: int | None):
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _hung_up(sock: socket.socket) -> bool:
    """Has every copy of the lab's end been closed? (recv() returning nothing may
    also be an empty packet, which the lab can send.)"""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))


def _gone(pid: int) -> bool:
    """The process has exited (a zombie), is exiting, or does not exist any more.

    Exiting (PF_EXITING in stat's flags) counts: while a process exits, a grader
    without CAP_SYS_PTRACE (a normal user, a container) can no longer read its
    syscall file, which would otherwise read as "cannot tell" rather than "gone"."""
    try:
        text = procfs.read(pid, "stat")
        if procfs.parse_stat(text)["state"] in ("Z", "X"):
            return True
        flags = int(text[text.rfind(")") + 2:].split()[6])
        return bool(flags & 0x4)    # PF_EXITING
    except (procfs.ProcError, ValueError, IndexError):
        return True


def _kill_group(pgid: int):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rmtree(path: str):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def _handle(res: RunResult, sock: socket.socket, seq: int, pid: int | None, data: bytes,
            t0: float, deadline: float, on_checkpoint, reply_fd: int | None = None):
    text = data.decode("ascii", "replace").strip()
    kind, _, rest = text.partition(" ")
    pid = pid or 0
    if kind == "hello" and res.main_pid is None:
        parts = rest.split()
        res.main_pid = pid
        res.lab_name = parts[1] if len(parts) > 1 else ""
        res.messages.append(Message(seq, pid, "hello", res.lab_name))
        return
    if kind == "fig":
        name, _, value = rest.partition(" ")
        if FIG_RE.match(name):
            v = parse_value(value)
            res.figures[name] = v
            res.messages.append(Message(seq, pid, "fig", name, v))
            return
    cp_name, _, cp_fd = rest.partition(" ")
    if kind == "cp" and FIG_RE.match(cp_name) and (cp_fd == "" or cp_fd.isdigit()):
        role = "main" if pid == res.main_pid else "child"
        cp = Checkpoint(cp_name, seq, pid, role, None, t=time.monotonic() - t0)
        res.messages.append(Message(seq, pid, "cp", cp_name))
        # with its own answer pipe, the lab must be blocked reading exactly that
        wait_fd = int(cp_fd) if cp_fd and reply_fd is not None else None
        held = None
        # never past the run's time limit: a lab that announces checkpoints
        # without waiting must not hold the grader HOLD_WAIT seconds for each
        end = min(time.monotonic() + HOLD_WAIT, deadline)
        while True:
            held = procfs.blocked_in_recv(pid, wait_fd)
            if held is True:
                break
            if _gone(pid):      # it exited instead of waiting (a zombie reads as False)
                held = False
                break
            if held is None or time.monotonic() > end:
                break
            time.sleep(0.0002)
        cp.held = held
        if held is not False:   # one that did not wait gets no observation (docs/contract.md)
            try:
                cp.obs = procfs.snapshot(pid)
            except procfs.ProcError as e:
                cp.error = str(e)
            if on_checkpoint and not cp.error:
                try:
                    on_checkpoint(res, cp)
                except Exception as e:  # a capture must never break the run
                    cp.error = f"capture failed: {e}"
        res.checkpoints.append(cp)
        try:
            # never block: a lab that does not read its answers must not hang us
            if reply_fd is not None:
                os.set_blocking(reply_fd, False)
                os.write(reply_fd, b"go")
            else:   # a lab speaking the first version of the protocol
                sock.send(b"go", socket.MSG_DONTWAIT)
        except OSError:
            pass
        return
    res.junk += 1
    if res.junk <= 20:
        res.messages.append(Message(seq, pid, "junk", text[:120]))
