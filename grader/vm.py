"""Run memlab inside a small QEMU guest: Debian's stock kernel, pure cgroup v2, NUMA nodes.

    from grader.vm import run_in_guest
    res = run_in_guest(root, ["/usr/bin/python3", "-m", "grader", "run", "cow", "--seed", "3"])
    res.exit, res.output, res.boot_seconds, res.error

    python3 -m grader.vm [--nodes 2] [--cpus 2] [--memory 1024] -- CMD ...

The guest (fetched and cached under build/vm/ by vm/build.py) is Debian's kernel booted
under QEMU's TCG with a busybox initramfs. Its /init (vm/init) mounts the host's / read-only
and the project tree read-write over virtio-9p, chroots into the host's root and runs the
command in the project directory, so the grader and the labs run there unchanged, with the
host's own Python and libraries. The command's output comes back on a second serial port
between marker lines; the kernel console goes to a log file. See docs/vm.md.
Set MEMLAB_VM_DEBUG=1 to see the kernel console and the QEMU command line on stderr.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import platform
import re
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parent.parent  # where vm/ and deps/ are
QEMU = "qemu-system-x86_64"
BUILD_TIMEOUT = 900          # fetching the kernel on a slow mirror
BOOT_TIMEOUT = 180           # from starting QEMU to the command's start marker
# A boot takes about 4 s here (TCG); once in a long while one hangs before the kernel
# prints anything (a CI run waited the full 180 s, console empty). A boot not done in
# BOOT_RETRY_AFTER s is abandoned and tried once more (the command has not started).
BOOT_RETRY_AFTER = 60
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KERNEL_ARGS = "console=ttyS0 panic=-1 cgroup_no_v1=all tsc=reliable"


@dataclass
class GuestResult:
    exit: int | None      # the command's exit status; None if it did not run to the end
    output: str           # its stdout+stderr (no kernel messages)
    boot_seconds: float   # from starting QEMU to the command's start
    error: str            # "" when the command ran and its status is known
    seconds: float = 0.0  # from starting QEMU to its exit
    console: str = ""     # the guest's console: kernel messages, /init's errors
    boot_hung: bool = False     # killed before the command started, by the boot limit
    boots: int = 1              # QEMU started this many times (a hung boot is retried once)

    @property
    def ok(self) -> bool:
        return self.exit == 0 and not self.error


class GuestError(Exception):
    pass


def debug_enabled() -> bool:
    return os.environ.get("MEMLAB_VM_DEBUG", "") not in ("", "0")


def vm_packages() -> list[str]:
    """The Debian packages deps/packages.txt lists for purpose "vm"."""
    try:
        lines = (CODE_ROOT / "deps" / "packages.txt").read_text().splitlines()
    except OSError:
        return ["qemu-system-x86", "busybox-static", "cpio", "numactl"]
    return [f[0] for f in (ln.split() for ln in lines)
            if len(f) >= 2 and not f[0].startswith("#") and f[1] == "vm"]


def guest_available() -> tuple[bool, str, str]:
    """(usable, reason, fix): can a guest be booted here? QEMU runs under TCG, so no
    /dev/kvm is needed; QEMU may be missing if it can still be installed (root + apt-get)."""
    machine = platform.machine()
    if platform.system() != "Linux" or machine not in ("x86_64", "AMD64", "amd64"):
        return (False, f"the guest chroots into this machine's own x86_64 programs; this is "
                f"{platform.system()} {machine}", "")
    install = "apt-get install -y --no-install-recommends " + " ".join(vm_packages())
    qemu = shutil.which(QEMU)
    if qemu:
        return True, f"{qemu} is installed (TCG emulation; /dev/kvm not needed)", ""
    if not shutil.which("apt-get"):
        return False, f"{QEMU} is not installed and there is no apt-get to install it", \
            f"install QEMU for x86_64 ({QEMU}), a static busybox and cpio"
    if os.geteuid() == 0:
        return True, f"{QEMU} is not installed yet; deps/install vm will install it", ""
    return False, f"{QEMU} is not installed (installing it needs root)", f"sudo {install}"


_prepared: dict[Path, dict] = {}  # per process: vm/build.py already ran for this tree


def prepare(root: Path, quiet: bool = True) -> dict:
    """Fetch and build what the guest needs (vm/build.py; cached), return build/vm/guest.json."""
    vmdir = Path(root).resolve() / "build" / "vm"
    known = _prepared.get(vmdir)
    if known and all(Path(known[k]).is_file() for k in ("kernel", "initrd")):
        return known
    argv = [sys.executable, str(CODE_ROOT / "vm" / "build.py"), "--vm-dir", str(vmdir)]
    if quiet:
        argv.append("--quiet")
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=None if not quiet else subprocess.PIPE, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise GuestError(f"vm/build.py did not finish within {BUILD_TIMEOUT} s") from None
    except OSError as e:
        raise GuestError(f"cannot run vm/build.py: {e.strerror}") from None
    if p.returncode != 0:
        msg = (p.stderr or b"").decode("utf-8", "replace").strip()
        raise GuestError(msg or f"vm/build.py failed (exit {p.returncode})")
    _prepared[vmdir] = json.loads((vmdir / "guest.json").read_text())
    return _prepared[vmdir]


def _smp_numa(memory_mb: int, cpus: int, nodes: int) -> list[str]:
    if nodes == 1:
        return ["-m", str(memory_mb), "-smp", str(cpus)]
    per = memory_mb // nodes
    smp = f"{cpus},sockets={nodes},cores={cpus // nodes},threads=1" if cpus % nodes == 0 \
        else str(cpus)  # one socket per node: no cache sharing across nodes
    args = ["-m", str(per * nodes), "-smp", smp]
    for n in range(nodes):
        args += ["-object", f"memory-backend-ram,id=m{n},size={per}M"]
        first, last = n * cpus // nodes, (n + 1) * cpus // nodes - 1
        node = f"node,nodeid={n},memdev=m{n}"
        if last >= first:  # fewer CPUs than nodes: some nodes are memory-only
            node += f",cpus={first}" + (f"-{last}" if last > first else "")
        args += ["-numa", node]
    # a distance drawn for each boot (symmetric, remote > local 10, never the kernel's
    # default 20): a program cannot report the table from memory, it has to read it
    rng = secrets.SystemRandom()
    for a in range(nodes):
        for b in range(a + 1, nodes):
            d = rng.choice([v for v in range(12, 41) if v != 20])
            args += ["-numa", f"dist,src={a},dst={b},val={d}", "-numa", f"dist,src={b},dst={a},val={d}"]
    return args


def _cmdline_value(s: str) -> str:
    if any(c in s for c in '"\n'):
        raise GuestError(f"cannot pass {s!r} on the kernel command line")
    return f'"{s}"' if " " in s or "\t" in s else s


def qemu_argv(guest: dict, root: Path, job: Path, token: str, console: Path, *,
              memory_mb: int, cpus: int, nodes: int, debug: bool) -> list[str]:
    append = KERNEL_ARGS + ("" if debug else " quiet") + \
        f" MEMLAB_ROOT={_cmdline_value(str(root))} MEMLAB_JOB={_cmdline_value(str(job))}" \
        f" MEMLAB_TOKEN={token}" + (" MEMLAB_DEBUG=1" if debug else "")
    extra = os.environ.get("MEMLAB_VM_APPEND", "").strip()  # more kernel arguments
    if extra:
        append = f"{KERNEL_ARGS} {extra} " + append[len(KERNEL_ARGS) + 1:]
    accel = os.environ.get("MEMLAB_VM_ACCEL", "tcg,thread=multi")

    def opt(s: str) -> str:  # QEMU option values double their commas
        return s.replace(",", ",,")
    return [QEMU, "-accel", accel, "-cpu", "max", "-machine", "q35",
            *_smp_numa(memory_mb, cpus, nodes),
            "-kernel", guest["kernel"], "-initrd", guest["initrd"], "-append", append,
            "-display", "none", "-monitor", "none", "-nodefaults", "-no-reboot",
            "-chardev", f"file,id=console,path={opt(str(console))}", "-serial", "chardev:console",
            "-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                       "multidevs=remap",
            "-virtfs", f"local,path={opt(str(root))},mount_tag=project,security_model=none,"
                       "multidevs=remap"]


SCRATCH_MB = 512


def scratch_disk(jobdir: Path) -> list[str]:
    """A fresh ext4 image for this run (sparse: costs almost nothing), attached as
    the guest's /dev/vda; /init mounts it on /tmp/scratch (MEMLAB_SCRATCH)."""
    img = jobdir / "scratch.img"
    with open(img, "wb") as f:
        f.truncate(SCRATCH_MB << 20)
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    try:
        p = subprocess.run([mkfs, "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1",
                            str(img)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise GuestError(f"cannot make the scratch disk with {mkfs}: {e}") from None
    if p.returncode != 0:
        raise GuestError(f"mkfs.ext4 failed: {p.stderr.strip()}")
    return ["-drive", f"file={str(img).replace(',', ',,')},if=virtio,format=raw,cache=unsafe"]


def job_script(root: Path, argv: list[str], env: dict[str, str] | None) -> str:
    environ = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
               "MEMLAB_GUEST": "1", "MEMLAB_SCRATCH": "/tmp/scratch", **(env or {})}
    return ("# written by grader/vm.py: run in the guest, chrooted into the host's /\n"
            f"cd {shlex.quote(str(root))} || exit 125\n"
            "exec env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in environ.items())
            + " " + " ".join(shlex.quote(a) for a in argv) + "\n")


class _Framer:
    """Cuts the command's output out of the second serial port's stream:
    MEMLAB-BEGIN <token>\\n ... \\nMEMLAB-END <token> <status>\\n, or MEMLAB-ERROR <token> ..."""

    def __init__(self, token: str, sink):
        self.begin = f"MEMLAB-BEGIN {token}\n".encode()
        self.end = f"\nMEMLAB-END {token} ".encode()
        self.error_re = re.compile(rb"MEMLAB-ERROR " + token.encode() + rb" ([^\n]*)\n")
        self.buf = b""
        self.started = False
        self.status: int | None = None
        self.init_error = ""
        self.output = bytearray()
        self.sink = sink
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.started_at = 0.0

    def _emit(self, upto: int) -> None:
        chunk = self.buf[:upto]
        self.buf = self.buf[upto:]
        self.output += chunk
        if self.sink and chunk:
            self.sink(self.decoder.decode(chunk))

    def feed(self, data: bytes) -> None:
        if self.status is not None:
            return
        self.buf += data
        if not self.started:
            m = self.error_re.search(self.buf)
            if m:
                self.init_error = m.group(1).decode("utf-8", "replace")
                self.buf = b""
                return
            i = self.buf.find(self.begin)
            if i < 0:
                return
            self.started = True
            self.started_at = time.monotonic()
            self.buf = self.buf[i + len(self.begin):]
        i = self.buf.find(self.end)
        if i >= 0:
            nl = self.buf.find(b"\n", i + len(self.end))
            if nl < 0:
                return
            word = self.buf[i + len(self.end):nl]
            self._emit(i)
            try:
                self.status = int(word)
            except ValueError:
                self.init_error = "unreadable end marker: " + word.decode("ascii", "replace")
            if self.sink:
                self.sink(self.decoder.decode(b"", final=True))
            return
        # keep back what could be the start of the end marker
        self._emit(max(0, len(self.buf) - len(self.end)))

    def text(self) -> str:
        return bytes(self.output).decode("utf-8", "replace")


def _sink(stream):
    if stream is None:
        return None
    if callable(stream) and not hasattr(stream, "write"):
        return stream

    def write(s: str) -> None:
        stream.write(s)
        stream.flush()
    return write


def _tail_console(path: Path, stop: threading.Event) -> None:
    """MEMLAB_VM_DEBUG: copy the console log to stderr as it grows."""
    pos = 0
    while True:
        done = stop.is_set()
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except OSError:
            data = b""
        if data:
            pos += len(data)
            sys.stderr.write(data.decode("utf-8", "replace"))
            sys.stderr.flush()
        if done:
            return
        stop.wait(0.2)


def _diagnose(console: str) -> str:
    """The most telling lines of a console log, for an error message."""
    lines = console.splitlines()
    for i, ln in enumerate(lines):
        if "Kernel panic" in ln:
            return "kernel panic: " + ln.split("Kernel panic - ", 1)[-1].strip()
    init_errs = [ln for ln in lines if ln.startswith("memlab-init:")]
    tail = init_errs[-3:] or [ln for ln in lines if ln.strip()][-5:]
    return "Last console lines:\n  " + "\n  ".join(tail) if tail else ""


def run_in_guest(root: Path, argv: list[str], *, timeout: float = 600, memory_mb: int = 1024,
                 cpus: int = 2, nodes: int = 2, stream=None,
                 env: dict[str, str] | None = None) -> GuestResult:
    """Run argv in the project directory `root` inside a fresh QEMU guest (Debian's kernel,
    cgroup v2 only, `nodes` NUMA nodes sharing memory_mb and cpus), and return its exit
    status and output. `stream` (a file or a callable taking str) receives the output as it
    comes. `timeout` bounds the guest's life (the guest build, cached, is not counted); QEMU
    is killed when it runs out. Never raises for guest failures: they are in .error."""
    root = Path(root).resolve()
    if not argv:
        return GuestResult(None, "", 0.0, "no command given")
    if nodes < 1 or cpus < 1 or memory_mb < 128 * nodes:
        return GuestResult(None, "", 0.0, f"bad guest shape: {nodes} nodes, {cpus} CPUs, "
                           f"{memory_mb} MB (at least 128 MB per node)")
    ok, reason, fix = guest_available()
    if not ok:
        return GuestResult(None, "", 0.0, f"QEMU unavailable: {reason}"
                           + (f" (fix: {fix})" if fix else ""))
    debug = debug_enabled()
    try:
        guest = prepare(root, quiet=not debug)
    except GuestError as e:
        return GuestResult(None, "", 0.0, f"cannot prepare the guest: {e}")

    token = secrets.token_hex(8)
    jobdir = root / "build" / "vm" / "jobs" / token
    jobdir.mkdir(parents=True)
    job = jobdir / "job.sh"
    console = jobdir / "console.log"
    try:
        job.write_text(job_script(root, list(map(str, argv)), env))
        cmd = qemu_argv(guest, root, job, token, console, memory_mb=memory_mb, cpus=cpus,
                        nodes=nodes, debug=debug)
        cmd += scratch_disk(jobdir)
    except GuestError as e:
        shutil.rmtree(jobdir, ignore_errors=True)
        return GuestResult(None, "", 0.0, str(e))
    if debug:
        print("memlab vm: " + shlex.join(cmd), file=sys.stderr, flush=True)
    sink = _sink(stream)
    res = _boot(cmd, token, console, timeout, sink, debug, boot_limit=BOOT_RETRY_AFTER)
    if res.boot_hung and timeout > BOOT_RETRY_AFTER:
        # never started: nothing ran, nothing was printed; keep its console, boot again
        try:
            shutil.copyfile(console, root / "build" / "vm" / "hung-console.log")
        except OSError:
            pass
        print(f"memlab vm: the guest did not boot within {BOOT_RETRY_AFTER} s; booting it "
              "once more (its console: build/vm/hung-console.log)", file=sys.stderr, flush=True)
        try:
            scratch_disk(jobdir)        # the same path, made afresh
        except GuestError as e:
            res.error += f" (and no second boot: {e})"
        else:
            res = _boot(cmd, token, console, timeout, sink, debug, boot_limit=BOOT_TIMEOUT)
            res.boots = 2
    try:
        shutil.copyfile(console, root / "build" / "vm" / "last-console.log")
    except OSError:
        pass
    if not debug:
        shutil.rmtree(jobdir, ignore_errors=True)
    return res


def _boot(cmd: list[str], token: str, console: Path, timeout: float, sink,
          debug: bool, boot_limit: float = BOOT_TIMEOUT) -> GuestResult:
    framer = _Framer(token, sink)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        return GuestResult(None, "", 0.0, f"cannot start {QEMU}: {e.strerror}")
    stop = threading.Event()
    tail = threading.Thread(target=_tail_console, args=(console, stop), daemon=True) \
        if debug else None
    if tail:
        tail.start()
    stderr = bytearray()
    killed = ""
    ended_at = 0.0
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    try:
        open_streams = 2
        while open_streams:
            now = time.monotonic()
            if framer.status is not None or framer.init_error:
                limit = ended_at + 10  # the guest is powering off
            elif not framer.started:
                limit = t0 + min(timeout, boot_limit)
            else:
                limit = t0 + timeout
            if now >= limit:
                killed = ("the guest did not power off after the command ended"
                          if framer.status is not None or framer.init_error else
                          f"the guest did not finish booting within {limit - t0:.0f} s"
                          if not framer.started else
                          f"timed out after {timeout:g} s (the command was still running)")
                break
            for key, _ in sel.select(limit - now):
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                elif key.data == "out":
                    had = framer.status is not None or framer.init_error
                    framer.feed(data)
                    if not had and (framer.status is not None or framer.init_error):
                        ended_at = time.monotonic()
                else:
                    stderr += data
    finally:
        sel.close()
        if killed or proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rc = proc.wait()
        stop.set()
        if tail:
            tail.join(2)
    seconds = time.monotonic() - t0
    if debug and stderr:
        sys.stderr.write(stderr.decode("utf-8", "replace"))
    boot = (framer.started_at - t0) if framer.started else 0.0
    try:
        con = console.read_text(errors="replace")
    except OSError:
        con = ""
    res = GuestResult(framer.status, framer.text(), boot, "", seconds, con)
    qemu_err = stderr.decode("utf-8", "replace").strip()
    if framer.status is not None:
        pass  # the end marker is the word, even if QEMU then had to be killed
    elif killed:
        res.exit = None
        res.error = f"{killed}; QEMU killed. {_diagnose(con)}".strip()
        res.boot_hung = not framer.started and seconds < timeout
    elif framer.init_error:
        res.error = f"the guest's /init failed: {framer.init_error}"
    elif framer.status is None:
        if rc & 1 and rc > 1 or rc == 1 and framer.started:
            res.exit = rc >> 1
            res.error = ("the command's output ended without the end marker; its exit status "
                         "comes from isa-debug-exit (low 7 bits only)")
        elif rc == 0:
            why = _diagnose(con)
            res.error = ("the guest reset or powered off before the command ended"
                         + (f": {why}" if why.startswith("kernel panic") else f". {why}"
                            if why else "")).strip()
        else:
            res.error = f"{QEMU} failed (exit {rc})" + (f": {qemu_err}" if qemu_err else "")
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts, cmd = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    p = argparse.ArgumentParser(
        prog="python3 -m grader.vm", usage="%(prog)s [options] -- CMD [ARG ...]",
        description="Run a command in memlab's QEMU guest (Debian's kernel, cgroup v2 only, "
                    "NUMA nodes), in the project directory; print its output, exit with its "
                    "status (125 if the guest failed). MEMLAB_VM_DEBUG=1 shows the console.")
    p.add_argument("--root", default=str(CODE_ROOT), help="the memlab tree (default: %(default)s)")
    p.add_argument("--nodes", type=int, default=2, help="NUMA nodes (default: %(default)s)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs (default: %(default)s)")
    p.add_argument("--memory", type=int, default=1024, metavar="MB",
                   help="memory, split evenly between the nodes (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds (default: %(default)s)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set an environment variable for the command (repeatable)")
    p.add_argument("--prepare", action="store_true", help="only fetch and build the guest")
    p.add_argument("--check", action="store_true", help="say whether QEMU can be used here")
    p.add_argument("-v", "--verbose", action="store_true", help="report timings on stderr")
    args = p.parse_args(opts)
    if args.check:
        ok, reason, fix = guest_available()
        print(f"{'yes' if ok else 'no'}: {reason}" + (f" (fix: {fix})" if fix else ""))
        return 0 if ok else 1
    if args.prepare:
        try:
            guest = prepare(Path(args.root), quiet=False)
        except GuestError as e:
            print(f"memlab vm: {e}", file=sys.stderr)
            return 1
        print(f"memlab vm: ready: {guest['package']} ({guest['kernel']}, {guest['initrd']})")
        return 0
    env = dict(e.split("=", 1) for e in args.env if "=" in e)
    if len(env) != len(args.env):
        p.error("--env wants NAME=VALUE")
    if not cmd:
        p.error("no command: put it after --, e.g. python3 -m grader.vm -- cat /proc/self/cgroup")
    try:
        prepare(Path(args.root), quiet=False)  # progress on stderr when it has work to do
    except GuestError as e:
        print(f"memlab vm: cannot prepare the guest: {e}", file=sys.stderr)
        return 125
    res = run_in_guest(Path(args.root), cmd, timeout=args.timeout, memory_mb=args.memory,
                       cpus=args.cpus, nodes=args.nodes, stream=sys.stdout, env=env)
    if args.verbose:
        booted = f"booted in {res.boot_seconds:.1f} s" if res.boot_seconds else "did not boot"
        print(f"memlab vm: {booted}, QEMU ran {res.seconds:.1f} s, exit {res.exit}",
              file=sys.stderr)
    if res.error:
        print(f"memlab vm: {res.error}", file=sys.stderr)
    return res.exit if res.exit is not None else 125


if __name__ == "__main__":
    sys.exit(main())
