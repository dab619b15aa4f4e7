"""The grader's promise, tested from both sides.

A program that reports (or prints) the expected numbers without doing the
experiment must score 0 on every check except the pure "it ran" checks. Each
file tests/cheats/<lab>/<name>.c is a complete cheating replacement of
labs/<lab>/<lab>.c (its first comment says what it tries); every one found is
graded here for two draws of the parameters. A cheat may keep a check only
where it really does that check's work: those few exceptions are listed in
EARNED, each with its reason. And the reference solution scores full marks.

A cheat file may contain the marker RECORD_MARKER: the test then grades the
reference lab with the same seed first and pastes every figure of its runs
there, as C initialisers {"run", "figure", "value"}, so that the cheat can
replay a real run (tests/cheats/maps/replay.c).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LABS, ROOT

from grader import spec

CHEATS_DIR = ROOT / "tests" / "cheats"
CHEATS = sorted(CHEATS_DIR.glob("*/*.c"))
SEEDS = (1, 2)
REFERENCE_SEEDS = (1, 2, 3)
RECORD_MARKER = "/* @RECORDED_FIGURES@ */"

# (lab, cheat) -> {check: why this cheat may pass it}. Only checks whose work the
# cheat genuinely does; a cheat that only lies must earn nothing.
EARNED: dict[tuple[str, str], dict[str, str]] = {
    ("faults", "no_touch"): {
        "mmap_is_free": "it really maps the region and honestly reports that mmap() cost nothing",
    },
    ("faults", "loop_populate"): {
        **{c: "the genuine experiment, measured" for c in
           ("mmap_is_free", "touch_faults", "no_major_faults", "rss_grows", "zero_page_reads",
            "zero_page_then_cow", "thp_faults", "thp_backed")},
        "populate_touch_free": "its pages really are present before the touch loop, and it measures it",
    },
    ("faults", "populate_all"): {
        "populate_faults_in_mmap": "its populate run is the genuine MAP_POPULATE experiment",
        "populate_touch_free": "its populate run is the genuine MAP_POPULATE experiment",
    },
    ("cow", "no_fork"): {
        "parent_fill_faults": "it really fills the buffer, and measures it",
    },
    ("cow", "no_fork_mimic"): {
        "parent_fill_faults": "it really fills the buffer, and measures it",
    },
    ("cow", "modelled_counters"): {
        "child_shares_pages": "it really forks: the child does share every page (nothing reported)",
        "parent_intact": "it really compares every page of the parent's buffer",
    },
    ("cow", "populate_child"): {
        "parent_fill_faults": "it really fills the buffer, and measures it",
        "child_shares_pages": "it really forks: the child does share every page",
        "child_write_faults": "its child really writes its pages, and measures it",
        "child_pss_grows": "its child really writes its pages, and measures it",
        "parent_intact": "it really compares every page of the parent's buffer",
    },
    ("cow", "idle_child"): {
        "parent_fill_faults": "it really fills the buffer, and measures it",
        "child_shares_pages": "it really forks: the child does share every page",
    },
    ("cow", "dontneed_child"): {
        "parent_fill_faults": "it really fills the buffer, and measures it",
        "child_shares_pages": "it really forks: the child does share every page",
        "child_reads_free": "its child really reads every shared page, and measures it",
        "parent_intact": "the parent's data really stays intact (nothing touched it)",
    },
    ("cow", "fresh_child"): {
        "parent_fill_faults": "it really fills the buffer, and measures it",
        "child_shares_pages": "it really forks: the child does share every page",
        "child_reads_free": "its child really reads every shared page, and measures it",
    },
    # Real addresses, mappings and offsets; only the kinds come from a table keyed
    # by object name, and on this layout the name decides the kind, so these
    # checks cannot tell. The table must still lose a check where the kind does
    # not follow from the name (see test_cheat_scores_nothing: a cheat must lose).
    ("maps", "guessed_kinds"): {
        "offsets": "it computes the load address and the offsets for real",
        "executable_segments": "real addresses and mappings; the name table equals the maps' kinds here",
        "heap_and_mmap": "real blocks and mappings; the name table equals the maps' kinds here",
        "stack_and_library": "real addresses and mappings; the name table equals the maps' kinds here",
        "aslr_moves": "real addresses, which ASLR really moves; kinds as for executable_segments",
        "norandom_fixed": "real addresses, really fixed by setarch -R; kinds as for executable_segments",
    },
    # Every malloc(), free() and mallopt() is real; only `where` is a size rule,
    # which is right wherever the size alone decides. Not placement_agrees: its
    # edge case exists to catch exactly this rule.
    ("threshold", "size_rule"): {
        "small_on_heap": "real blocks; a small block is always on the heap, as the rule says",
        "large_mmapped": "real blocks; a large block is always mapped, as the rule says",
        "large_mmap_syscalls": "its mmap() calls are real (the edge is placement_agrees's business)",
        "reuse_first_mmapped": "a real malloc(N), N >= 150000: mapped, as the rule says",
        "reuse_free_munmaps": "its free() really munmaps the block",
        "reuse_larger_still_mmapped": "a real malloc(2N): mapped, as the rule says",
        "reuse_syscalls": "its malloc() calls and their mmap()s are real",
        "explicit_threshold_stays": "a real malloc(N) under an explicit threshold: mapped, as the rule says",
    },
    ("threshold", "split_block"): {
        "placement_agrees": "its where_is() really reads the maps for every address it reports",
        "reuse_first_mmapped": "its one real malloc (3N) is the first block, and really is a mapping",
    },
    # The oom cheats below run the reference's score part (read, raise, try to
    # lower their own oom_score_adj) and cheat only in the kill part.
    ("oom", "parent_kills"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
    },
    ("oom", "adj_no_fill"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
    },
    ("oom", "kill_then_oom"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
    },
    ("oom", "rlimit_victim"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
    },
    ("oom", "pdeathsig_victim"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
    },
    ("oom", "sigio_victim"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
    },
    ("cow", "count_says_zero"): {
        "parent_fill_faults": "a correct lab but for its count of changed pages",
        "child_shares_pages": "a correct lab but for its count of changed pages",
        "child_reads_free": "a correct lab but for its count of changed pages",
        "child_write_faults": "a correct lab but for its count of changed pages",
        "child_pss_grows": "a correct lab but for its count of changed pages",
    },
    ("cgroup", "no_fsync"): {
        "cache_reclaimed_first": "it is a correct lab but for the missing fsync(): its anonymous memory, OOM and counters are real",
        "oom_inside_the_group": "it is a correct lab but for the missing fsync(): its anonymous memory, OOM and counters are real",
        "outside_untouched": "it is a correct lab but for the missing fsync(): its anonymous memory, OOM and counters are real",
        "pressure": "it is a correct lab but for the missing fsync(): its anonymous memory, OOM and counters are real",
    },
    ("cgroup", "fadvise_drop"): {
        **{c: "it is a correct lab but for the cache it drops itself before 'anon': its file, "
              "anonymous memory, OOM and counters are real" for c in
           ("cache_charged", "oom_inside_the_group", "outside_untouched", "pressure")},
    },
    ("oom", "bystander_leaves"): {
        **{c: "its score part is the reference's" for c in
           ("scores_read", "raise_adj", "lowering_needs_privilege")},
        **{c: "its --no-adj run is the reference's" for c in ("biggest_is_the_victim", "group_counters")},
    },
    ("oom", "modelled_scores"): {
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays outside), and it reports the group's own counters",
    },
    ("oom", "sigio_decoy"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its throwaway process really runs the limited group into its limit (the lab stays outside), and it reports the group's own counters",
    },
    ("faults", "decoy_populate"): {
        "mmap_is_free": "it maps and touches for real and reads its counters honestly",
        "touch_faults": "it maps and touches for real and reads its counters honestly",
        "no_major_faults": "it maps and touches for real and reads its counters honestly",
        "rss_grows": "it maps and touches for real and reads its counters honestly",
        "populate_touch_free": "its loop inside map_region() really faults every page before 'mapped'",
        "zero_page_reads": "without a zero page, writing zeros is what a read does (RSS and contents alike); with one, the RSS check fails it",
        "zero_page_then_cow": "without a zero page, writing zeros is what a read does (RSS and contents alike); with one, the fault check fails it",
        "thp_faults": "it maps and touches for real and reads its counters honestly",
        "thp_backed": "it maps and touches for real and reads its counters honestly",
    },
    ("oom", "self_chosen_victim"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "adj_picks_the_victim": "its adj run is the reference's: the bystander with adj 1000 is killed",
        "group_counters": "its adj run is the reference's: the allocator runs the group into its limit",
    },
    ("oom", "decoy_victim"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its decoy really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
    },
    ("oom", "lone_allocator"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
    },
    ("oom", "subgroup_victim"): {
        "scores_read": "its score part is the reference's: it really reads /proc/self/oom_score{,_adj}",
        "raise_adj": "its score part is the reference's: it really raises its own adj",
        "lowering_needs_privilege": "its score part is the reference's: it really tries to lower its adj",
        "group_counters": "its allocator really runs the limited group into its limit (the lab stays "
                          "outside), and it reports the group's own counters",
        "biggest_is_the_victim": "its plain run is genuine where the kernel counts it (cgroup v2): the OOM "
                                 "killer picks the allocator across the group's subtree, equal adj",
    },
    ("oom", "no_lower"): {
        "scores_read": "it really reads /proc/self/oom_score{,_adj} (the reference's code)",
        "raise_adj": "it really raises its own adj (the reference's code)",
    },
    ("cgroup", "no_file"): {
        "oom_inside_the_group": "its child really runs past the limit and the group's OOM killer kills it",
        "outside_untouched": "the OOM kill in the group is real, and the lab outside really keeps its memory",
    },
    ("cgroup", "self_kill"): {
        "cache_charged": "its child really writes and fsync()s the file inside the group",
        "cache_reclaimed_first": "its child really takes its anonymous memory, and the cache really goes",
    },
    ("cgroup", "decoy_oom"): {
        "cache_charged": "its child really writes and fsync()s the file inside the group",
        "cache_reclaimed_first": "its child really takes its anonymous memory, and the cache really goes",
        "outside_untouched": "its decoy's OOM kill in the group is real, and the lab outside really "
                             "keeps its memory",
        "pressure": "the group really reclaims its cache and really OOM-kills (the decoy)",
    },
    ("numa", "default_policy"): {
        "topology": "it really reads the node count and numa_distance() with libnuma",
    },
    ("numa", "made_up_distances"): {
        "local_first_touch": "its placement experiments are the reference's, counted with move_pages()",
        "bind": "its placement experiments are the reference's, counted with move_pages()",
        "interleave": "its placement experiments are the reference's, counted with move_pages()",
        "preferred": "its placement experiments are the reference's, counted with move_pages()",
        "migrate": "its placement experiments are the reference's, counted with move_pages()",
    },
}


def ran_check(name: str) -> bool:
    """The pure "it ran" checks: exit status and checkpoints only."""
    return name == "completes" or name.endswith("_completes")


def _c_string(value) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{text}"'


def _recorded_figures(res) -> str:
    return "\n".join(f"    {{{_c_string(run)}, {_c_string(name)}, {_c_string(value)}}},"
                     for run, r in res.runs.items() for name, value in r.figures.items())


def _verdict_line(v) -> str:
    return (f"{v.check.name}: {v.status}, observed {v.observed!r}, reported {v.reported!r}, "
            f"expected {v.expected!r}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", CHEATS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cheat_scores_nothing(path: Path, seed, grade_source, grade_reference):
    lab, cheat = path.parent.name, path.stem
    assert lab in LABS, f"{path}: no lab '{lab}'"
    source = path.read_text()
    assert source.lstrip().startswith("/*"), f"{path} must start with a comment saying what it tries"
    if RECORD_MARKER in source:
        source = source.replace(RECORD_MARKER, _recorded_figures(grade_reference(lab, seed=seed)))
    res = grade_source(lab, source, seed=seed)
    assert res.build and res.build.ok, f"the cheat does not compile:\n{res.build.log if res.build else ''}"

    internal = [f"{v.check.name}: {v.message}" for v in res.verdicts if v.internal]
    assert not internal, f"the grader hit an internal error: {internal}"
    ran = [v for v in res.verdicts if ran_check(v.check.name)]
    if ran and all(v.status == "skip" for v in ran):
        pytest.skip(f"the cheat {lab}/{cheat} cannot run on this machine ({ran[0].message})")
    # a cheat that does not even run proves nothing
    not_ran = [f"{v.check.name}: {v.message}" for v in res.verdicts
               if ran_check(v.check.name) and v.status != "ok"]
    assert not not_ran, f"the cheat itself is broken: {not_ran}"
    silent = [v.check.name for v in res.verdicts if v.status == "fail" and not v.message.strip()]
    assert not silent, f"failing verdicts without a message: {silent}"

    earned = EARNED.get((lab, cheat), {})
    graded = [v for v in res.verdicts if not ran_check(v.check.name) and v.check.name not in earned]
    holes = [_verdict_line(v) for v in graded if v.status not in ("fail", "skip")]
    assert not holes, (f"grader hole: the cheat {lab}/{cheat} (seed {seed}) passes "
                       + "; ".join(holes))
    if graded and all(v.status == "skip" for v in graded):
        pytest.skip(f"every check the cheat {lab}/{cheat} aims at skips on this machine "
                    f"({graded[0].message}); tests/test_vm.py grades it in the guest")
    assert any(v.status == "fail" for v in graded), \
        f"the cheat {lab}/{cheat} loses no check at all: it scores {res.score}/{res.max_score}"


def test_earned_exceptions_name_real_cheats_and_checks():
    cheats = {(p.parent.name, p.stem) for p in CHEATS}
    for (lab, cheat), checks in EARNED.items():
        assert (lab, cheat) in cheats, f"EARNED names a cheat that does not exist: {lab}/{cheat}"
        names = {c.name for c in spec.load(ROOT / "labs" / lab).checks}
        for check, why in checks.items():
            assert check in names, f"EARNED[{lab}/{cheat}]: no check '{check}' in labs/{lab}/lab.toml"
            assert not ran_check(check), f"EARNED[{lab}/{cheat}]: '{check}' is an 'it ran' check"
            assert why.strip(), f"EARNED[{lab}/{cheat}][{check}] needs a reason"


def test_every_lab_has_liar_and_printer():
    """A lab is not done until a program that lies (liar) and one that prints the
    expected figures without the experiment (printer) are shown to fail it."""
    for lab in LABS:
        for name in ("liar", "printer"):
            assert (CHEATS_DIR / lab / f"{name}.c").is_file(), f"tests/cheats/{lab}/{name}.c is missing"


@pytest.mark.parametrize("seed", REFERENCE_SEEDS)
@pytest.mark.parametrize("lab", LABS)
def test_reference_passes_every_check(lab, seed, grade_reference):
    res = grade_reference(lab, seed=seed)
    internal = [f"{v.check.name}: {v.message}" for v in res.verdicts if v.internal]
    assert not internal, f"the grader hit an internal error: {internal}"
    failed = {v.check.name: v.message for v in res.verdicts if v.status == "fail"}
    assert not failed, f"the reference fails with seed {seed}: {failed}"
    for v in res.verdicts:
        if v.status == "skip":
            assert v.message.strip(), f"{v.check.name} is skipped without a reason"
    assert res.score == res.max_score
    graded = [v for v in res.verdicts if not ran_check(v.check.name)]
    if graded and all(v.status == "skip" for v in graded):
        pytest.skip(f"every graded check of {lab} skips on this machine ({graded[0].message})")
    assert any(v.status == "ok" for v in graded), "the reference passes no graded check (all skipped?)"
