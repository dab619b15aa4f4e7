"""Grade one lab: build it, draw its parameters, run every run, evaluate every check."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import env as envmod
from . import cgroup as cgroupmod
from . import procfs
from .build import BuildResult, build_lab, first_error
from .checks import CONSTANTS, Verdict, checkpoint_ns, derive_values, evaluate
from .expr import NS, Evaluator, Unavailable
from .runner import Checkpoint, RunResult, execute
from .sandbox import cgroup_allowed, sandbox_needs
from .spec import Lab, fill_placeholders_args


@dataclass
class LabResult:
    lab: Lab
    seed: int
    values: dict
    build: BuildResult | None
    runs: dict[str, RunResult] = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)          # run name -> Feature
    verdicts: list[Verdict] = field(default_factory=list)
    error: str = ""                                       # a verdict for the whole lab

    @property
    def score(self) -> float:
        return sum(v.score for v in self.verdicts)

    @property
    def max_score(self) -> float:
        return sum(v.max_score for v in self.verdicts)

    @property
    def passed(self) -> bool:
        return all(v.status != "fail" for v in self.verdicts)


def lab_seed(seed: int, lab: str) -> int:
    """Each lab's draw depends only on the seed and its name, not on the order."""
    return random.Random(f"{seed}:{lab}").getrandbits(32)


def _capture_hook(lab: Lab, run_name: str, values: dict, facts: dict, sandbox=None):
    captures = [c for c in lab.runs[run_name].captures]
    if not captures:
        return None
    page = facts["page_size"]

    def hook(res: RunResult, cp: Checkpoint):
        for cap in captures:
            if cap.at != cp.name or cap.name in res.captures:
                continue
            ev = Evaluator({**CONSTANTS, **values, "env": NS(facts),
                            "fig": NS(res.figures, lambda k: f"the lab did not report figure '{k}'"),
                            "cp": NS({c.name: checkpoint_ns(c) for c in res.checkpoints + [cp]
                                      if not c.error},
                                     lambda k: f"the lab never reached checkpoint '{k}'")})
            try:
                if cap.kind == "cgroup" and not cgroup_allowed(sandbox, ev.eval(cap.cgroup)):
                    raise ValueError(f"'{ev.eval(cap.cgroup)}' is not a cgroup of this run")
                res.captures[cap.name] = _take(cap, ev, cp, page)
            except procfs.ProcError as e:
                if "Permission denied" in str(e) or "Operation not permitted" in str(e):
                    res.captures[cap.name] = Unavailable(
                        f"the grader may not read the lab's memory ({e})",
                        "run the grader as the same user as the lab, without a ptrace-restricting "
                        "security module, or as root")
                else:
                    res.captures[cap.name] = e
            except Exception as e:  # noqa: BLE001 - recorded, reported by the check
                res.captures[cap.name] = e
    return hook


def _take(cap, ev: Evaluator, cp: Checkpoint, page: int):
    if cap.kind == "pages":
        addr, length, byte = ev.eval(cap.addr), ev.eval(cap.length), ev.eval(cap.count_pages_not)
        return procfs.pages_not_filled(cp.pid, int(addr), int(length), int(byte) & 0xFF, page)
    if cap.kind == "poke":
        addr, length = int(ev.eval(cap.addr)), int(ev.eval(cap.length))
        pid = int(ev.eval(cap.pid)) if cap.pid else cp.pid
        # which pages: drawn from the run's own figures, so a rerun pokes the same ones
        rng = random.Random(f"{addr}:{length}:{cp.name}")
        return procfs.poke_pages(pid, addr, length, int(ev.eval(cap.poke_pages)),
                                 int(ev.eval(cap.poke_byte)) & 0xFF, page, rng)
    if cap.kind == "signal":
        # only to the checkpoint's sender, waiting at it, one the grader started, and
        # never the lab's main process: ending it would end the run
        if cp.role == "main":
            raise ValueError(f"checkpoint '{cp.name}' came from the lab's main process, "
                             "not from a child: not ended")
        return procfs.end_with_signal(cp.pid, str(ev.eval(cap.signal)), os.getpid())
    if cap.kind == "foreign":
        addr, length = ev.eval(cap.addr), ev.eval(cap.length)
        allowed = bytes(int(b) & 0xFF for b in ev.eval(cap.count_pages_foreign))
        return procfs.pages_with_foreign_bytes(cp.pid, int(addr), int(length), allowed, page)
    if cap.kind == "cgroup":
        return NS(cgroupmod.counters(ev.eval(cap.cgroup)), "cgroup counter")
    if cap.kind == "numa":
        return NS(procfs.numa_placement(cp.pid, int(ev.eval(cap.numa))), "NUMA placement field")
    pids = ev.eval(cap.pids)
    return [procfs.state(int(p)) for p in pids]


def grade_lab(lab: Lab, root: Path, seed: int, *, build_dir: Path | None = None,
              labs_src: Path | None = None, binary: Path | None = None,
              wrap: Callable[[list[str]], list[str]] | None = None,
              progress: Callable[[str], None] | None = None,
              timeout: float | None = None, sandbox=None,
              build: BuildResult | None = None) -> LabResult:
    """Build (unless `binary` is given), run every run of the lab, evaluate its checks.

    `labs_src` replaces labs/ as the source of <lab>/<lab>.c (a submission);
    `timeout` overrides the lab's own wall-clock limit per run; `sandbox` (a
    grader.sandbox.Sandbox) compiles and runs the lab in it; `build`: the lab was
    compiled already (build.build_labs), this is how."""
    facts = envmod.facts()
    rng = random.Random(lab_seed(seed, lab.name))
    values = derive_values(lab, lab.draw(rng), facts)
    result = LabResult(lab, seed, values, None)

    if binary is None:
        result.build = build or build_lab(root, lab.name, build_dir, labs_src, sandbox=sandbox)
        if not result.build.ok:
            result.error = "compile error"
            first = first_error(result.build.log)
            for check in lab.checks:
                result.verdicts.append(Verdict(lab.name, check, "fail", 0.0,
                                               message=f"the lab did not compile: {first}"))
            return result
        binary = result.build.binary

    for run in lab.runs.values():
        missing = next((envmod.feature(f) for f in run.requires if not envmod.feature(f).ok), None)
        if missing:
            result.skipped[run.name] = missing
            continue
        if progress:
            progress(run.name)
        argv = [str(binary)] + fill_placeholders_args(run.args, values)
        env = {k: fill_placeholders_args([v], values)[0] for k, v in run.env.items()}
        result.runs[run.name] = execute(run.name, argv, env=env, timeout=timeout or lab.timeout,
                                        strace=run.strace if run.strace and
                                        envmod.feature("strace").ok else None,
                                        norandom=run.norandom,
                                        on_checkpoint=_capture_hook(lab, run.name, values, facts,
                                                                    sandbox),
                                        wrap=wrap, sandbox=sandbox, needs=sandbox_needs(lab))
        # a lab's cgroup must not outlive its run, whatever the lab did (a sandbox
        # removes the run's whole cgroup itself, and nothing else may be touched)
        group = result.runs[run.name].figures.get("cgroup")
        if isinstance(group, str) and not getattr(sandbox, "active", False):
            cgroupmod.destroy(group)
    for check in lab.checks:
        result.verdicts.append(evaluate(lab, check, result.runs, result.skipped, values, facts))
    return result
