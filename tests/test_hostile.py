"""Hostile and broken lab programs (tests/hostile/*.c) graded as the faults lab.

Each program replaces labs/faults/faults.c. The grading, with a 3 s time limit
per run, must end in bounded time, pass nothing the program did not earn, name
the cause in every failing verdict, report no internal (grader) error, leave no
process of the lab alive, and still produce the log and results.json.

Four runs x 3 s for each of the programs that never end would take a minute in
series, so the gradings run in worker processes (this file run as a script):
the programs that never end side by side (the CPU-hungry ones at the lowest
priority), the rest in a few lanes. Each worker grades one program and
writes a JSON summary that the tests below read. A worker is its own grader
process: its subreaper and its sweep of leftovers concern its own labs only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402

HOSTILE = ROOT / "tests" / "hostile"
PROGRAMS = sorted(p.stem for p in HOSTILE.glob("*.c"))
LAB = "faults"
TIMEOUT = 3.0                     # seconds per run (grade_lab's timeout=)
RUNS = len(spec.load(ROOT / "labs" / LAB).runs)
BOUND = RUNS * TIMEOUT + 10       # the whole grading of one program, at most


@dataclass(frozen=True)
class Expect:
    causes: tuple[str, ...]       # every failing verdict's message holds one of these
    ends: tuple[str, ...]         # every run's RunResult.describe() holds one of these
    passes: frozenset = frozenset()   # checks that must pass (the program earns them)
    seed: int = 1


SEGV, TIME, FLOOD = "killed by SIGSEGV", "stopped at the time limit", "output flood"
# the `completes` check of a run that exits 0 without its checkpoints says only
# "expected exit 0, checkpoints start, mapped, touched, done, observed 0"
NO_CPS = "expected exit 0, checkpoints start"
NEVER = "the lab never reached checkpoint"

EXPECT = {
    "segv_start": Expect((SEGV,), (SEGV,)),
    "segv_child": Expect(("exited with status 1",), ("exited with status 1",)),
    "abort": Expect(("killed by SIGABRT",), ("killed by SIGABRT",)),
    "exit3": Expect(("exited with status 3",), ("exited with status 3",)),
    "busy_loop": Expect((TIME,), (TIME,)),
    "pause_forever": Expect((TIME,), (TIME,)),
    "pipe_recv": Expect((TIME,), (TIME,)),
    "sigstop": Expect((TIME,), (TIME,)),
    "go_unread": Expect((TIME,), (TIME,)),
    "stdout_flood": Expect((FLOOD,), (FLOOD,)),
    "stderr_flood": Expect((FLOOD,), (FLOOD,)),
    # a busy machine may not read 200000 messages within 3 s: a run may then end at
    # the time limit (tests/test_runner.py::test_message_limit checks the limit itself)
    "msg_flood": Expect(("more than 200000 grader messages", TIME),
                        ("more than 200000 grader messages", TIME)),
    "cp_nowait": Expect(("did not wait for the grader", NEVER + " 'read'", NO_CPS), ("completed",)),
    "close_fd": Expect((NEVER, NO_CPS), ("completed",)),
    "close_all": Expect(("exited with status 4",), ("exited with status 4",)),
    "no_init": Expect(("never connected to the grader", NO_CPS), ("completed",)),
    "junk": Expect(("exited with status 5",), ("exited with status 5",)),
    # seed 4 draws 48 MiB: the program really touches the region, under 64 MiB
    "bad_values": Expect(("the lab reported",), ("completed",), frozenset({"completes"}), seed=4),
    "leftover": Expect((NEVER, NO_CPS), ("completed",)),
    "grandchild": Expect((NEVER, NO_CPS), ("completed",)),
    "fork20": Expect((NEVER, NO_CPS), ("completed",)),
}

# 4 runs x 3 s each: every one in a lane of its own
ALONE = ["go_unread", "pause_forever", "pipe_recv", "sigstop", "busy_loop", "msg_flood"]
NICE = {"busy_loop", "msg_flood"}     # CPU hogs: at the lowest priority (labs inherit it)
LANES = 3                         # the others (mostly compiling) in this many lanes


# ---- the worker: grade one program, summarise --------------------------------

def _jsonable(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


def _processes_running(binary: str) -> list[int]:
    """Pids of processes still running the program (by executable or command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            exe = ""
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            cmd = ""
        if exe == binary or binary in cmd:
            found.append(int(entry))
    return found


def grade_one(name: str, session_build: Path, work: Path) -> dict:
    """Grade tests/hostile/<name>.c as the faults lab; a JSON-able summary."""
    from grader import env as envmod
    from grader.grading import grade_lab
    from grader.report import lab_report, log_text
    from grader.results import results_document

    src = work / "src"
    (src / LAB).mkdir(parents=True)
    shutil.copy2(HOSTILE / f"{name}.c", src / LAB / f"{LAB}.c")
    build = work / "build"           # as the fresh_build fixture makes it
    build.mkdir()
    shutil.copytree(session_build / "common", build / "common")
    shutil.copy2(session_build / "libmemlab.a", build / "libmemlab.a")
    for stamp in session_build.glob(".deps-*"):
        shutil.copy2(stamp, build / stamp.name)

    seed = EXPECT[name].seed if name in EXPECT else 1
    # the runner's own limits, without strace: the faults lab's runs are traced, and a
    # traced flood is slowed by strace, not by the runner (a traced run's leftovers:
    # test_runner.py; a traced flood meets the trace limit: test_sandbox.py)
    lab = spec.load(ROOT / "labs" / LAB)
    for run in lab.runs.values():
        run.strace = []
    t0 = time.monotonic()
    res = grade_lab(lab, ROOT, seed, build_dir=build, labs_src=src, timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    binary = str(res.build.binary) if res.build else ""
    out = {
        "elapsed": elapsed, "binary": binary, "error": res.error,
        "build_log": res.build.log if res.build and not res.build.ok else "",
        "survivors": _processes_running(binary) if binary else [],
        "verdicts": [{"check": v.check.name, "status": v.status, "message": v.message,
                      "internal": v.internal} for v in res.verdicts],
        "runs": {},
    }
    for rname, run in res.runs.items():
        out["runs"][rname] = {
            "described": run.describe(), "exit": run.exit, "signal": run.signal,
            "limit": run.limit, "duration": run.duration, "leftovers": run.leftovers,
            "junk": run.junk, "main_pid": run.main_pid, "out_bytes": run.out_bytes,
            "stdout_len": len(run.stdout), "stderr_len": len(run.stderr),
            "messages": len(run.messages),
            "figures": {k: _jsonable(v) for k, v in run.figures.items()},
            "checkpoints": [{"name": c.name, "pid": c.pid, "role": c.role, "held": c.held,
                             "error": c.error, "observed": bool(c.obs)} for c in run.checkpoints],
        }
    try:
        text = log_text(res) + lab_report(res, False, None)
        doc = json.dumps(results_document([res], envmod.facts(), seed, elapsed))
        out["log_chars"], out["json_chars"] = len(text), len(doc)
    except Exception:  # noqa: BLE001 - reported by the test
        out["report_error"] = traceback.format_exc()
    return out


def _worker_main(argv: list[str]):
    name, session_build, work = argv[0], Path(argv[1]), Path(argv[2])
    if name in NICE:
        os.nice(19)
    try:
        summary = grade_one(name, session_build, work)
    except Exception:  # noqa: BLE001 - the grader raised: reported by the test
        summary = {"crash": traceback.format_exc()}
    (work / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker_main(sys.argv[2:])
    sys.exit(0)

import pytest  # noqa: E402 - after the worker's exit: a worker needs no pytest

# ---- the scheduler -------------------------------------------------------------

def _kill_strays(work: Path):
    """After a worker that had to be killed: end the processes of its lab (by pid)."""
    for pid in _processes_running(str(work / "build")):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def grade_all(names: list[str], session_build: Path, base: Path) -> dict[str, dict]:
    others = [n for n in names if n not in ALONE]
    lanes = [[n] for n in ALONE if n in names] + [others[i::LANES] for i in range(LANES)]
    lanes = [lane for lane in lanes if lane]
    hard = BOUND + 40                 # a worker running longer than this is hung
    results: dict[str, dict] = {}
    running: dict[int, tuple[str, subprocess.Popen, float, Path]] = {}
    while any(lanes) or running:
        for i, lane in enumerate(lanes):
            if i not in running and lane:
                name = lane.pop(0)
                work = base / name
                work.mkdir()
                proc = subprocess.Popen([sys.executable, __file__, "--worker", name,
                                         str(session_build), str(work)],
                                        stdin=subprocess.DEVNULL, start_new_session=True)
                running[i] = (name, proc, time.monotonic(), work)
        time.sleep(0.05)
        for i, (name, proc, started, work) in list(running.items()):
            if proc.poll() is None and time.monotonic() - started < hard:
                continue
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                _kill_strays(work)
                results[name] = {"hung": f"the grading did not end within {hard:.0f} s"}
            else:
                try:
                    results[name] = json.loads((work / "summary.json").read_text())
                except (OSError, ValueError) as e:
                    results[name] = {"crash": f"worker exited {proc.returncode}, no summary: {e}"}
            del running[i]
    return results


@pytest.fixture(scope="module")
def graded(session_build, tmp_path_factory) -> dict[str, dict]:
    return grade_all(PROGRAMS, session_build, tmp_path_factory.mktemp("hostile"))


def _summary(graded, name: str) -> dict:
    s = graded[name]
    assert "hung" not in s, f"{name}: {s['hung']}"
    assert "crash" not in s, f"{name}: the grader raised:\n{s['crash']}"
    assert not s["build_log"], f"{name} did not compile:\n{s['build_log']}"
    return s


# ---- the verdicts of every program ----------------------------------------------

def test_every_program_has_expectations():
    assert PROGRAMS and set(PROGRAMS) == set(EXPECT), \
        f"programs without an entry: {set(PROGRAMS) - set(EXPECT)}; entries without a program: " \
        f"{set(EXPECT) - set(PROGRAMS)}"


@pytest.mark.parametrize("name", PROGRAMS)
def test_hostile_program_gets_a_clear_verdict(graded, name):
    s = _summary(graded, name)
    exp = EXPECT[name]
    assert s["elapsed"] <= BOUND, f"grading took {s['elapsed']:.1f} s (bound {BOUND:.0f} s)"
    assert s["runs"], "no run took place"
    for rname, run in s["runs"].items():
        assert any(e in run["described"] for e in exp.ends), f"run {rname}: {run['described']}"
        assert run["duration"] <= TIMEOUT + 1.5, f"run {rname} lasted {run['duration']:.1f} s"
    for v in s["verdicts"]:
        assert not v["internal"], f"{v['check']}: internal error: {v['message']}"
        if v["status"] == "skip":
            continue
        if v["check"] in exp.passes:
            assert v["status"] == "ok", f"{v['check']} should pass: {v['message']}"
            continue
        assert v["status"] == "fail", f"{v['check']} passed for {name}"
        assert any(c in v["message"] for c in exp.causes), \
            f"{v['check']}: the message does not name the cause: {v['message']!r}"
    assert "report_error" not in s, s.get("report_error")
    assert s["log_chars"] > 0 and s["json_chars"] > 0
    assert s["survivors"] == [], f"processes of the lab survived the grading: {s['survivors']}"


# ---- what some programs prove besides ---------------------------------------------

def _runs(graded, name):
    return _summary(graded, name)["runs"].values()


def _pid_is_dead(pid: int, binary: str) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return True
    except OSError:
        exe = ""                     # a zombie, or not ours to read
    return exe != binary


@pytest.mark.parametrize("name,figure", [("leftover", "leftover_pid"),
                                         ("grandchild", "grandchild_pid")])
def test_leftover_processes_are_killed(graded, name, figure):
    s = _summary(graded, name)
    for run in s["runs"].values():
        pid = run["figures"].get(figure)
        assert isinstance(pid, int) and pid > 1, run["figures"]
        assert run["leftovers"] >= 1
        assert _pid_is_dead(pid, s["binary"]), f"pid {pid} of {name} is still alive"
        # the grader waited SWEEP_GRACE for the streams, not until the leftover's end
        assert run["duration"] < 2


def test_time_limit_kills_and_records_the_signal(graded):
    for name in ("busy_loop", "pause_forever", "pipe_recv", "sigstop", "go_unread"):
        for run in _runs(graded, name):
            assert run["limit"] == "time" and run["signal"] == signal.SIGKILL, (name, run)
            assert TIMEOUT <= run["duration"] <= TIMEOUT + 1.5


def test_checkpoint_on_own_pipe_was_held(graded):
    """pipe_recv sits in read(): the grader cannot tell it from waiting for "go"."""
    for run in _runs(graded, "pipe_recv"):
        assert [(c["name"], c["held"]) for c in run["checkpoints"]] == [("start", True)]


def test_output_flood_keeps_a_bounded_part(graded):
    for name, stream in (("stdout_flood", "stdout_len"), ("stderr_flood", "stderr_len")):
        for run in _runs(graded, name):
            assert run["out_bytes"] > 16 * 1024 * 1024
            assert run[stream] < 256 * 1024 + 200


def test_message_flood_is_stopped(graded):
    """Stopped at 200000 messages, or, where the machine is too busy for the grader to
    read that many in 3 s, at the time limit (test_runner.py lowers the limit to
    check that one for sure)."""
    for r in _runs(graded, "msg_flood"):
        assert r["limit"] in ("messages", "time"), r["described"]
        assert 10_000 <= r["messages"] <= 200_000, r["messages"]


def test_checkpoints_without_waiting(graded):
    """cp_nowait: no observation, no 2 s wait for each checkpoint, no time limit."""
    for run in _runs(graded, "cp_nowait"):
        assert run["exit"] == 0 and run["duration"] < 2
        cps = run["checkpoints"]
        assert [c["name"] for c in cps] == ["start", "mapped", "touched", "done"]
        assert all(c["held"] is False and not c["observed"] for c in cps), cps


def test_junk_is_counted_and_the_channel_stays_open(graded):
    for run in _runs(graded, "junk"):
        assert run["junk"] >= 14
        assert run["exit"] == 5
        assert [(c["name"], c["held"]) for c in run["checkpoints"]] == [("start", True)]
        assert "a" * 300 not in json.dumps(run["figures"])


def test_closing_every_stream_does_not_cut_the_run_short(graded):
    for run in _runs(graded, "close_all"):
        assert run["exit"] == 4 and run["signal"] is None and run["duration"] >= 0.45


def test_crash_in_child_keeps_its_checkpoint(graded):
    for run in _runs(graded, "segv_child"):
        (cp,) = run["checkpoints"]
        assert cp["name"] == "worker" and cp["role"] == "child" and cp["pid"] != run["main_pid"]


def test_bad_values_are_not_numbers(graded):
    for run in _runs(graded, "bad_values"):
        figs = run["figures"]
        assert figs["mmap_minflt"] == "NaN" and figs["touch_anon_kb"] == "inf"
        assert figs["touch_majflt"] == -1


def test_concurrent_children_checkpoints_are_attributed(graded):
    for run in _runs(graded, "fork20"):
        kids = {v for k, v in run["figures"].items() if k.startswith("kid.")}
        assert len(kids) == 20
        cps = run["checkpoints"]
        assert len(cps) == 100
        assert all(c["role"] == "child" and c["pid"] in kids for c in cps)
        assert all(sum(c["pid"] == k for c in cps) == 5 for k in kids)


def test_concurrent_children_checkpoints_are_all_observed(graded):
    """Each checkpoint has its own answer pipe: with 20 children waiting at once,
    every one is observed while it waits, and released by its own "go"."""
    for run in _runs(graded, "fork20"):
        bad = [c for c in run["checkpoints"] if c["held"] is not True or c["error"]]
        assert not bad, f"{len(bad)} of 100 checkpoints not observed while held: {bad[:3]}"

