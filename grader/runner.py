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

import ctypes
import os
import platform
import re
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from . import procfs

OUTPUT_KEEP = 256 * 1024          # bytes of each stream kept for the log and the checks
OUTPUT_LIMIT = 16 * 1024 * 1024   # more than this in total is a flood: the run is stopped
MESSAGE_LIMIT = 200_000
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
    limit: str = ""                  # "time", "output", "messages": what stopped it
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
    leftovers: int = 0
    junk: int = 0

    def describe(self) -> str:
        """How the run ended, in words."""
        if self.error:
            return self.error
        if self.limit == "time":
            return f"stopped at the time limit ({self.duration:.1f} s)"
        if self.limit == "output":
            return f"stopped: output flood (more than {OUTPUT_LIMIT // (1024 * 1024)} MiB)"
        if self.limit == "messages":
            return f"stopped: more than {MESSAGE_LIMIT} grader messages"
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
    t = text.strip()
    try:
        return int(t, 0)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def set_subreaper() -> bool:
    """Make orphans of our runs our children, so that none escapes the sweep."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0   # PR_SET_CHILD_SUBREAPER
    except OSError:
        return False


def sweep_children(exclude: set[int] = frozenset()) -> int:
    """Kill and reap every child of ours (orphans reparented to us included)."""
    me = os.getpid()
    killed = 0
    for _ in range(50):
        kids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in exclude:
                continue
            try:
                st = procfs.parse_stat(procfs.read(int(entry), "stat"))
            except procfs.ProcError:
                continue
            if st["ppid"] == me:
                kids.append(int(entry))
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return killed


def _strace_argv(calls: list[str], out: str) -> list[str]:
    wanted = sorted(set(calls) | {"sendto", "sendmsg"})
    return ["strace", "-f", "-qq", "-o", out, "-s", "300", "-e", "signal=none",
            "-e", "trace=" + ",".join(wanted), "--"]


_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)\)\s+=\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
_PROTOCOL = re.compile(r"^(hello|fig|cp) ")
_STRACE_MSG = re.compile(r'^\d+, "((?:[^"\\]|\\.)*)"')


def parse_strace(text: str) -> list[dict]:
    """strace -f output to events: {pid, call, args, ret, msg?} in order."""
    events, pending = [], {}
    for line in text.splitlines():
        m = _STRACE_LINE.match(line)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        r = _RESUMED.match(rest)
        if r:
            rest = pending.pop(pid, r.group(1) + "(") + r.group(2)
        c = _CALL.match(rest)
        if not c:
            continue
        name, args, ret = c.group(1), c.group(2), c.group(3).split()[0] if c.group(3) else ""
        ev = {"pid": pid, "call": name, "args": args, "ret": ret}
        try:
            ev["ret_int"] = int(ret, 0)
        except ValueError:
            ev["ret_int"] = None
        if name in ("sendto", "sendmsg"):
            mm = _STRACE_MSG.match(args)
            if mm:
                ev["msg"] = mm.group(1).encode().decode("unicode_escape", "replace")
        events.append(ev)
    # place each syscall among the protocol messages: `at` = messages sent before it + 0.5
    sent = 0
    for ev in events:
        if _PROTOCOL.match(ev.get("msg", "")):
            sent += 1
            ev["at"] = sent
        else:
            ev["at"] = sent + 0.5
    return events


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
            cwd: str | None = None) -> RunResult:
    """Run argv once, observing it. Never raises for anything the lab does."""
    argv = list(argv)
    if norandom:
        argv = ["setarch", platform.machine(), "-R"] + argv
    tracefile = None
    if strace:
        fd, tracefile = tempfile.mkstemp(prefix="memlab-strace-")
        os.close(fd)
        argv = _strace_argv(strace, tracefile) + argv
    if wrap:
        argv = wrap(argv)
    res = RunResult(name=name, argv=argv)

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    lab_env = dict(LAB_ENV)
    lab_env.update(env or {})
    lab_env["MEMLAB_FD"] = str(theirs.fileno())
    workdir = cwd or tempfile.mkdtemp(prefix="memlab-run-")
    set_subreaper()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),), env=lab_env,
                                cwd=workdir, start_new_session=True)
    except OSError as e:
        theirs.close()
        ours.close()
        res.error = f"could not start {argv[0]}: {e.strerror}"
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

    def stop(reason: str):
        res.limit = reason
        _kill_group(proc.pid)

    while open_streams > 0:
        now = time.monotonic()
        if now >= deadline and not res.limit:
            stop("time")
        if exited_at is not None and now - exited_at > SWEEP_GRACE:
            break       # something the lab left behind holds our pipes open
        wait = min(deadline - now, 0.1) if exited_at is None else 0.05
        for key, _ in sel.select(timeout=max(wait, 0.001)):
            what = key.data
            if what == "exit":
                sel.unregister(pidfd)
                exited_at = time.monotonic()
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
            # the control channel
            try:
                data, anc, _, _ = ours.recvmsg(512, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(ours)
                open_streams -= 1
                continue
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS and len(cdata) >= 12:
                    pid = struct.unpack("3i", cdata[:12])[0]
            seq += 1
            if seq > MESSAGE_LIMIT and not res.limit:
                stop("messages")
                continue
            _handle(res, ours, seq, pid, data, t0, on_checkpoint)
        if res.limit and exited_at is None:
            # killed: wait for the exit notice, but don't hang on stuck streams
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            exited_at = time.monotonic()
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
    res.leftovers = sweep_children()
    for s in (proc.stdout, proc.stderr):
        s.close()
    ours.close()
    res.stdout, res.stderr = streams.text("stdout"), streams.text("stderr")
    res.out_bytes = streams.total
    if tracefile:
        try:
            with open(tracefile, errors="replace") as f:
                res.trace = parse_strace(f.read())
        finally:
            os.unlink(tracefile)
    if not cwd:
        _rmtree(workdir)
    return res


def _kill_group(pgid: int):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rmtree(path: str):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def _handle(res: RunResult, sock: socket.socket, seq: int, pid: int | None, data: bytes,
            t0: float, on_checkpoint):
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
    if kind == "cp" and FIG_RE.match(rest):
        role = "main" if pid == res.main_pid else "child"
        cp = Checkpoint(rest, seq, pid, role, None, t=time.monotonic() - t0)
        res.messages.append(Message(seq, pid, "cp", rest))
        held = None
        end = time.monotonic() + HOLD_WAIT
        while True:
            held = procfs.blocked_in_recv(pid)
            if held is not False or time.monotonic() > end:
                break
            time.sleep(0.0002)
        cp.held = held
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
            sock.send(b"go")
        except OSError:
            pass
        return
    res.junk += 1
    if res.junk <= 20:
        res.messages.append(Message(seq, pid, "junk", text[:120]))
