"""grader/runner.py: execute() and its control-socket protocol, parse_value, parse_strace.

The labs here are tiny C programs compiled by the tests, linked with the session
build's libmemlab.a."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import env as envmod  # noqa: E402
from grader import runner  # noqa: E402
from grader.runner import execute, parse_strace, parse_value  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
HEAD = """#include "memlab.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
"""


@pytest.fixture
def cc(session_build, tmp_path):
    """cc(source) -> path of the compiled program (memlab.h included for it)."""
    count = [0]

    def build(source: str) -> str:
        count[0] += 1
        src = tmp_path / f"t{count[0]}.c"
        out = tmp_path / f"t{count[0]}"
        src.write_text(HEAD + source)
        p = subprocess.run(["gcc", "-std=gnu11", "-D_GNU_SOURCE", "-O1", "-Wall",
                            f"-I{ROOT / 'common'}", str(src), "-o", str(out),
                            str(session_build / "libmemlab.a"), "-lm"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert p.returncode == 0, p.stdout
        return str(out)
    return build


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln]


# ---- figures and messages -------------------------------------------------------

def test_figures_arrive_with_their_names_and_parsed_values(cc):
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    ml_report_long("n.int", 42);
    ml_report_long("n.neg", -7);
    ml_report_addr("n.hex", (void *)0xdeadbeef000);
    ml_report_double("n.float", 2.5);
    ml_report_str("n.text", "hello world");
    ml_report_str("n.nan", "NaN");
    ml_report_str("n.big", "99999999999999999999999999");
    ml_report_long("n.again", 1);
    ml_report_long("n.again", 2);
    return 0;
}
""")
    res = execute("figs", [prog], timeout=10)
    assert res.ok and res.describe() == "completed"
    assert res.figures == {"n.int": 42, "n.neg": -7, "n.hex": 0xdeadbeef000, "n.float": 2.5,
                           "n.text": "hello world", "n.nan": "NaN",
                           "n.big": 99999999999999999999999999, "n.again": 2}
    assert [m.kind for m in res.messages] == ["hello"] + ["fig"] * 9
    assert [m.seq for m in res.messages] == list(range(1, 11))
    assert res.lab_name == "tiny" and res.main_pid and res.junk == 0
    assert all(m.pid == res.main_pid for m in res.messages)


@pytest.mark.parametrize("text,value", [
    ("42", 42), ("  42 ", 42), ("-7", -7), ("0x1f", 31), ("0XFF", 255), ("2.5", 2.5),
    ("-0.125", -0.125), ("1e3", 1000.0), ("99999999999999999999999999", 10**26 - 1),
    ("12abc", "12abc"), ("hello world", "hello world"), ("", ""),
    # not finite: kept as text, so that they compare equal to no number
    ("nan", "nan"), ("NaN", "NaN"), ("inf", "inf"), ("-inf", "-inf"), ("1e999", "1e999"),
])
def test_parse_value(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_junk_is_counted_and_an_empty_packet_does_not_end_the_channel(cc):
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    int fd = atoi(getenv("MEMLAB_FD"));
    send(fd, "", 0, 0);
    send(fd, "cp BAD", 6, 0);
    send(fd, "fig", 3, 0);
    send(fd, "\xff\xfe garbage", 10, 0);
    send(fd, "hello memlab/1 again", 20, 0);
    ml_checkpoint("after");
    return 0;
}
""")
    res = execute("junk", [prog], timeout=10)
    assert res.ok, res.describe()
    assert res.junk == 5
    assert [m.kind for m in res.messages] == ["hello"] + ["junk"] * 5 + ["cp"]
    (cp,) = res.checkpoints
    assert cp.name == "after" and cp.held is True and cp.seq == 7


# ---- checkpoints ------------------------------------------------------------------

def test_checkpoint_pid_and_role_are_the_senders(cc):
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    ml_checkpoint("p1");
    pid_t pid = fork();
    if (pid == 0) {
        ml_report_long("child_pid", getpid());
        ml_checkpoint("c1");
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    ml_report_long("parent_pid", getpid());
    ml_checkpoint("p2");
    return 0;
}
""")
    res = execute("fork", [prog], timeout=10)
    assert res.ok, res.describe()
    main, child = res.figures["parent_pid"], res.figures["child_pid"]
    assert res.main_pid == main != child
    got = [(c.name, c.role, c.pid, c.held) for c in res.checkpoints]
    assert got == [("p1", "main", main, True), ("c1", "child", child, True),
                   ("p2", "main", main, True)]
    c1 = res.checkpoints[1]
    assert c1.obs["pid"] == child and c1.obs["ppid"] == main and not c1.error
    fig_child = next(m for m in res.messages if m.name == "child_pid")
    assert fig_child.pid == child          # from SCM_CREDENTIALS, not from the text


def test_observations_reflect_the_moment_of_the_checkpoint(cc):
    pages = 2000
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (size_t)atol(argv[1]);
    char *p = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    ml_report_addr("region", p);
    ml_checkpoint("before");
    for (size_t i = 0; i < n; i++)
        p[i * page] = 1;
    ml_checkpoint("after");
    return 0;
}
""")
    res = execute("touch", [prog, str(pages)], timeout=10)
    assert res.ok, res.describe()
    before, after = res.checkpoints
    assert before.held is True and after.held is True
    assert after.obs["minflt"] - before.obs["minflt"] >= pages
    assert after.obs["rss_anon_kb"] - before.obs["rss_anon_kb"] >= pages * PAGE // 1024
    assert before.obs["state"] == "S" and after.obs["state"] == "S"   # waiting in recv()
    assert 0 <= before.t <= after.t <= res.duration
    (vma,) = [v for v in after.obs["maps"] if v.contains(res.figures["region"])]
    assert vma.kind == "anon" and vma.perms.startswith("rw") and vma.size >= pages * PAGE


def test_a_checkpoint_without_waiting_gets_no_observation(cc):
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    send(atoi(getenv("MEMLAB_FD")), "cp early", 8, 0);
    usleep(300 * 1000);
    return 0;
}
""")
    t0 = time.monotonic()
    res = execute("nowait", [prog], timeout=10)
    assert res.ok, res.describe()
    (cp,) = res.checkpoints
    assert cp.held is False and cp.obs == {} and not cp.error
    # it exited after 0.3 s: the grader noticed, rather than wait HOLD_WAIT (2 s)
    assert time.monotonic() - t0 < runner.HOLD_WAIT


# ---- limits -------------------------------------------------------------------------

def test_wall_clock_limit(cc):
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    ml_checkpoint("start");
    for (;;)
        pause();
}
""")
    t0 = time.monotonic()
    res = execute("slow", [prog], timeout=1.0)
    took = time.monotonic() - t0
    assert res.limit == "time" and not res.ok
    assert "stopped at the time limit" in res.describe()
    assert 1.0 <= res.duration and took < 3.0
    assert res.signal == signal.SIGKILL and res.rusage      # status and rusage still collected
    assert [c.name for c in res.checkpoints] == ["start"]


def test_message_limit(cc, monkeypatch):
    monkeypatch.setattr(runner, "MESSAGE_LIMIT", 3000)
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    for (long i = 0;; i++)
        ml_report_long("n", i);
}
""")
    res = execute("flood", [prog], timeout=20)
    assert res.limit == "messages" and res.describe() == "stopped: more than 3000 grader messages"
    assert len(res.messages) == 3000 and res.duration < 10


def test_output_limit(cc, monkeypatch):
    monkeypatch.setattr(runner, "OUTPUT_LIMIT", 1 << 20)
    monkeypatch.setattr(runner, "OUTPUT_KEEP", 4096)
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    for (;;)
        puts("all work and no play makes jack a dull boy");
}
""")
    res = execute("chatty", [prog], timeout=20)
    assert res.limit == "output" and "output flood" in res.describe()
    assert res.out_bytes > 1 << 20 and res.duration < 10
    assert res.stdout.startswith("all work") and len(res.stdout) < 4096 + 200
    assert "output cut at 4 KiB" in res.stdout


def test_a_lab_that_closes_its_streams_is_waited_for(cc):
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    close(atoi(getenv("MEMLAB_FD")));
    close(1);
    close(2);
    usleep(300 * 1000);
    return 6;
}
""")
    res = execute("quiet", [prog], timeout=10)
    assert res.exit == 6 and res.signal is None and res.describe() == "exited with status 6"
    assert res.duration >= 0.3


@pytest.mark.parametrize("traced,status", [(False, 0), (True, 0), (True, 3)])
def test_leftovers_are_killed(cc, traced, status):
    """A grandchild in a session of its own, still running when the lab exits, is killed
    and counted. Traced too: strace waits for every process it traces, yet the leftover
    must neither keep the finished run alive until the time limit nor change its exit
    status."""
    if traced and not envmod.feature("strace").ok:
        pytest.skip(envmod.feature("strace").reason)
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    int p[2];
    if (pipe(p) < 0)
        return 1;
    if (fork() == 0) {
        if (fork() == 0) {
            setsid();
            ml_report_long("left", getpid());
            write(p[1], "x", 1);
            sleep(1000);
        }
        _exit(0);
    }
    char c;
    read(p[0], &c, 1);
    return atoi(argv[1]);
}
""")
    res = execute("left", [prog, str(status)], timeout=8, strace=["getpid"] if traced else None)
    assert not res.limit, res.describe()
    assert res.exit == status
    assert res.leftovers >= 1       # the grandchild (and its parent's zombie, unreaped)
    assert res.duration < runner.SWEEP_GRACE + (2 if traced else 1)
    assert not os.path.exists(f"/proc/{res.figures['left']}")
    if traced:
        assert any(e["call"] == "getpid" for e in res.trace)


def test_a_program_that_cannot_start(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))   # where its files go
    res = execute("missing", ["/nonexistent/memlab-lab"], timeout=5)
    assert res.error.startswith("could not start /nonexistent/memlab-lab") and not res.ok
    assert res.describe() == res.error
    assert list(tmp_path.iterdir()) == []          # its run directory is removed


# ---- the lab's surroundings ----------------------------------------------------------

def test_environment_is_the_fixed_small_one(cc, monkeypatch):
    monkeypatch.setenv("MEMLAB_TEST_SECRET", "must-not-leak")
    monkeypatch.delenv("MEMLAB_SCRATCH", raising=False)   # passed through when set (QEMU guest)
    prog = cc(r"""
extern char **environ;
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    char cwd[4096], c;
    printf("cwd %s\n", getcwd(cwd, sizeof cwd));
    printf("stdin %zd\n", read(0, &c, 1));
    return 0;
}
""")
    res = execute("env", [prog], env={"RUN_VAR": "1"}, timeout=10)
    assert res.ok, res.describe()
    env = dict(ln[4:].split("=", 1) for ln in lines(res.stdout) if ln.startswith("env "))
    fd = env.pop("MEMLAB_FD")
    assert fd.isdigit()
    assert env == {**runner.LAB_ENV, "RUN_VAR": "1"}
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin" and env["LANG"] == env["LC_ALL"] == "C"
    assert "MEMLAB_TEST_SECRET" not in res.stdout
    cwd = next(ln[4:] for ln in lines(res.stdout) if ln.startswith("cwd "))
    assert Path(cwd).name.startswith("memlab-run-") and not Path(cwd).exists()  # fresh, removed
    assert "stdin 0" in res.stdout                                              # /dev/null


# ---- parse_strace ------------------------------------------------------------------------

# strace -f -qq output of a lab and its child (captured, then trimmed), with the
# lines strace writes when two processes interleave, a call whose start strace
# did not see, a signal, an exit, and a call that never returned.
SAMPLE = r"""4106  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f524364a000
4106  munmap(0x7f524363f000, 43895)     = 0
4106  sendto(4, "hello memlab/1 t", 16, MSG_NOSIGNAL, NULL, 0) = 16
4106  sendto(4, "fig a 1", 7, MSG_NOSIGNAL, NULL, 0) = 7
4106  mmap(NULL, 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f5243646000
4107  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>
4106  sendto(4, "cp mapped", 9, MSG_NOSIGNAL, NULL, 0 <unfinished ...>
4107  <... mmap resumed>)               = 0x7f5243648000
4106  <... sendto resumed>)             = 9
4107  sendto(4, "cp kid", 6, MSG_NOSIGNAL, NULL, 0) = 6
4106  munmap(0x7f5243646000, 16384)     = 0
4108  <... read resumed>"x", 1)         = 1
4107  munmap(0x7f5243648000, 8192)      = 0
4107  +++ exited with 0 +++
4106  --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=4107, si_uid=0, si_status=0} ---
4106  sendto(4, "fig s caf\303\251 \"q\"", 15, MSG_NOSIGNAL, NULL, 0) = 15
4106  brk(NULL <unfinished ...>
4106  exit_group(0)                     = ?
"""


def test_parse_strace_sample():
    events = parse_strace(SAMPLE)
    # how each process ended is kept apart from the calls (call "+++")
    assert [(e["pid"], e["ret"]) for e in events if e["call"] == "+++"] == [(4107, "exited with 0")]
    events = [e for e in events if e["call"] != "+++"]
    got = [(e["pid"], e["call"], e["at"]) for e in events]
    assert got == [
        (4106, "mmap", 0.5), (4106, "munmap", 0.5),
        (4106, "sendto", 1), (4106, "sendto", 2),
        (4106, "mmap", 2.5), (4107, "mmap", 2.5),
        (4106, "sendto", 3), (4107, "sendto", 4),
        (4106, "munmap", 4.5), (4108, "read", 4.5), (4107, "munmap", 4.5),
        (4106, "sendto", 5), (4106, "exit_group", 5.5),
    ]
    child_mmap = events[5]        # put back together from <unfinished ...> and <... resumed>
    assert child_mmap["args"] == "NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0"
    assert child_mmap["ret"] == "0x7f5243648000" and child_mmap["ret_int"] == 0x7f5243648000
    cp = events[6]
    assert cp["msg"] == "cp mapped" and cp["ret_int"] == 9
    assert cp["args"] == '4, "cp mapped", 9, MSG_NOSIGNAL, NULL, 0'
    assert [e.get("msg") for e in events if e["call"] == "sendto"][:4] == \
        ["hello memlab/1 t", "fig a 1", "cp mapped", "cp kid"]
    assert events[11]["msg"].startswith("fig s caf") and events[11]["msg"].endswith(' "q"')
    assert events[9]["args"] == '"x", 1'           # resumed without its start
    assert events[12]["ret"] == "?" and events[12]["ret_int"] is None
    assert events[1]["ret_int"] == 0 and events[4]["args"].startswith("NULL, 16384,")


JUNK_SAMPLE = r"""900  sendto(4, "hello memlab/1 t", 16, MSG_NOSIGNAL, NULL, 0) = 16
900  sendto(4, "go away", 7, MSG_NOSIGNAL, NULL, 0) = 7
900  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
900  sendto(5, "fig other 1", 11, 0, NULL, 0) = 11
900  sendto(4, "fig lost 1", 10, MSG_NOSIGNAL, NULL, 0) = -1 EPIPE (Broken pipe)
900  sendto(4, "", 0, 0, NULL, 0)       = 0
900  sendto(4, "fig a 1", 7, MSG_NOSIGNAL, NULL, 0) = 7
900  munmap(0x7f0000000000, 4096)       = 0
"""


def test_parse_strace_counts_what_the_grader_received_on_the_channel():
    # with the channel's descriptor: junk and empty packets count (the grader numbers
    # them), a failed send and a send on another socket do not
    at = [(e["call"], e.get("msg"), e["at"]) for e in parse_strace(JUNK_SAMPLE, 4)]
    assert [a for _, _, a in at] == [1, 2, 2.5, 2.5, 2.5, 3, 4, 4.5]
    # without it: only what looks like a protocol message
    at = [e["at"] for e in parse_strace(JUNK_SAMPLE)]
    assert at == [1, 1.5, 1.5, 2, 3, 3.5, 4, 4.5]


def test_strace_positions_match_the_graders_message_numbers(cc):
    if not envmod.feature("strace").ok:
        pytest.skip(envmod.feature("strace").reason)
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    send(atoi(getenv("MEMLAB_FD")), "junk!", 5, 0);
    ml_report_long("a", 1);
    char *p = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ml_checkpoint("mapped");
    munmap(p, 16384);
    ml_report_long("b", 2);
    return 0;
}
""")
    res = execute("traced", [prog], strace=["mmap", "munmap"], timeout=20)
    assert res.ok, res.describe() + res.stderr
    seq = {m.name: m.seq for m in res.messages if m.kind != "junk"}
    assert seq == {"tiny": 1, "a": 3, "mapped": 4, "b": 5}
    (mm,) = [e for e in res.trace if e["call"] == "mmap" and ", 16384," in e["args"]]
    (um,) = [e for e in res.trace if e["call"] == "munmap" and e["args"].endswith(", 16384")]
    assert mm["at"] == seq["a"] + 0.5 and um["at"] == seq["mapped"] + 0.5
    assert mm["pid"] == um["pid"] == res.main_pid
    sends = [e for e in res.trace if e.get("msg", "").startswith("cp mapped ")]
    assert len(sends) == 1 and sends[0]["at"] == seq["mapped"]


def test_messages_queued_at_exit_are_read_though_a_leftover_holds_the_pipes(cc, monkeypatch):
    """The loop gives up on the streams soon after the lab exits when a leftover holds
    them open; what the lab sent before exiting is still read (a busy grader may not
    have reached it yet: here one message per wakeup and no grace at all)."""
    from grader import runner
    monkeypatch.setattr(runner, "CTL_BATCH", 1)
    monkeypatch.setattr(runner, "SWEEP_GRACE", 0.0)
    prog = cc(r"""
int main(int argc, char **argv)
{
    ml_init("tiny", argc, argv);
    for (int i = 0; i < 500; i++) {
        char name[32];
        snprintf(name, sizeof name, "n.%d", i);
        ml_report_long(name, i);
    }
    if (fork() == 0) {      /* holds stdout and stderr open */
        sleep(5);
        _exit(0);
    }
    return 0;
}
""")
    res = execute("queued", [prog], timeout=10)
    assert res.exit == 0 and res.duration < 4, res.describe()
    assert res.figures == {f"n.{i}": i for i in range(500)}


def test_strace_without_seccomp_bpf_still_traces(monkeypatch):
    """An strace older than 5.3 has no --seccomp-bpf (env feature strace_seccomp, probed
    once, handed to a batch's workers): the run is traced without it."""
    from grader.env import Feature
    monkeypatch.setattr(envmod, "feature", lambda name: Feature(name != "strace_seccomp", "old"))
    argv = runner._strace_argv(["getpid"], "/tmp/out")
    assert "--seccomp-bpf" not in argv
    assert "trace=?clone,?clone3,?execve,?fork,?getpid,?sendmsg,?sendto,?vfork" in argv
    monkeypatch.setattr(envmod, "feature", lambda name: Feature(True))
    assert "--seccomp-bpf" in runner._strace_argv(["getpid"], "/tmp/out")


def test_an_inherited_ignore_of_a_signal_the_grader_may_send_is_undone():
    before = signal.getsignal(signal.SIGUSR1)
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        runner.default_signals()
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_parse_strace_reads_how_each_process_ended():
    text = ("100  clone(child_stack=NULL, flags=SIGCHLD) = 101\n"
            "101  +++ killed by SIGKILL +++\n"
            "100  --- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_USER, si_pid=1, si_uid=0} ---\n"
            "102  +++ killed by SIGSEGV (core dumped) +++\n"
            "100  +++ exited with 3 +++\n")
    events = parse_strace(text)
    ends = {e["pid"]: e["ret"] for e in events if e["call"] == "+++"}
    assert ends == {101: "killed by SIGKILL", 102: "killed by SIGSEGV", 100: "exited with 3"}
    assert [e["call"] for e in events if e["call"] != "+++"] == ["clone"]


def test_a_traced_run_records_how_its_processes_ended(tmp_path):
    if not envmod.feature("strace").ok:
        pytest.skip(envmod.feature("strace").reason)
    res = execute("ends", ["/bin/sh", "-c", "sleep 5 & kill -9 $!; wait; sh -c 'exit 3'; exit 0"],
                  strace=["kill"], timeout=10)
    assert res.exit == 0
    assert sorted(res.ends.values()) == ["exited with 0", "exited with 3", "killed by SIGKILL"], res.ends
