"""grader/env.py: machine facts read from a fake /proc and /sys tree, and features."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import env as envmod  # noqa: E402
from grader.env import Feature, cgroup_memory_version  # noqa: E402

facts = envmod.facts.__wrapped__          # uncached: every test builds its own tree
feature = envmod.feature.__wrapped__

THP = "sys/kernel/mm/transparent_hugepage"


def tree(tmp_path: Path, files: dict[str, str], dirs=()) -> str:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for d in dirs:
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    return str(tmp_path)


# ---- THP, aslr, pmd_size, perf, numa ----------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("[always] madvise never\n", "always"),
    ("always [madvise] never\n", "madvise"),
    ("always madvise [never]\n", "never"),
    ("always madvise never\n", "unsupported"),      # no bracket: cannot tell
    ("", "unsupported"),
    (None, "unsupported"),                          # no file: a kernel without THP
])
def test_thp_mode(tmp_path, text, want):
    files = {} if text is None else {f"{THP}/enabled": text}
    assert facts(tree(tmp_path, files))["thp"] == want


def test_thp_defrag(tmp_path):
    root = tree(tmp_path, {f"{THP}/defrag": "always defer defer+madvise [madvise] never\n"})
    assert facts(root)["thp_defrag"] == "madvise"
    assert facts(tree(tmp_path / "none", {}))["thp_defrag"] == ""


@pytest.mark.parametrize("text, want", [("2\n", 2), ("1\n", 1), ("0", 0), (None, -1), ("x\n", -1),
                                        ("", -1)])
def test_aslr(tmp_path, text, want):
    files = {} if text is None else {"proc/sys/kernel/randomize_va_space": text}
    assert facts(tree(tmp_path, files))["aslr"] == want


@pytest.mark.parametrize("text, want", [(None, 2 * 1024 * 1024), ("2097152\n", 2097152),
                                        ("536870912\n", 536870912), ("junk\n", 2 * 1024 * 1024)])
def test_pmd_size(tmp_path, text, want):
    files = {} if text is None else {f"{THP}/hpage_pmd_size": text}
    assert facts(tree(tmp_path, files))["pmd_size"] == want


@pytest.mark.parametrize("text, want", [("2\n", 2), ("-1\n", -1), ("4", 4), (None, None), ("x", None)])
def test_perf_paranoid(tmp_path, text, want):
    files = {} if text is None else {"proc/sys/kernel/perf_event_paranoid": text}
    assert facts(tree(tmp_path, files))["perf_paranoid"] == want


def test_numa_nodes(tmp_path):
    root = tree(tmp_path, {"sys/devices/system/node/possible": "0-1\n"},
                dirs=["sys/devices/system/node/node0", "sys/devices/system/node/node1",
                      "sys/devices/system/node/nodeX"])
    assert facts(root)["numa_nodes"] == 2
    assert facts(tree(tmp_path / "none", {}))["numa_nodes"] == 1


def test_container(tmp_path):
    assert facts(tree(tmp_path / "a", {".dockerenv": ""}))["container"] is True
    assert facts(tree(tmp_path / "b", {"run/.containerenv": ""}))["container"] is True
    assert facts(tree(tmp_path / "c", {}))["container"] is False


def test_fake_root_facts(tmp_path):
    f = facts(tree(tmp_path, {}))
    assert f["kernel"] == ""                     # not this machine's kernel
    assert f["zero_page"] is True                # not probed for a fake root
    assert f["cgroup"] is None
    assert f["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert f["cpus"] >= 1


def test_facts_of_this_machine_has_every_documented_fact():
    f = envmod.facts()
    assert set(f) == {"kernel", "arch", "glibc", "page_size", "pmd_size", "thp", "thp_defrag",
                      "aslr", "cgroup", "root", "container", "cpus", "numa_nodes", "zero_page",
                      "perf_paranoid", "numa_distances"}
    assert f["thp"] in ("always", "madvise", "never", "unsupported")
    assert f["cgroup"] in (1, 2, None)
    assert envmod.facts() is f                   # cached


# ---- cgroup memory version --------------------------------------------------------------

V1_HYBRID = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
"""

V2 = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

# a container: no optional fields, the cgroup namespace root mounted read-only
V2_CONTAINER = """\
600 500 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
610 600 0:60 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro
"""


def test_cgroup_v1_hybrid(tmp_path):
    root = tree(tmp_path, {"proc/self/mountinfo": V1_HYBRID,
                           "sys/fs/cgroup/unified/cgroup.controllers": ""})
    assert cgroup_memory_version(root) == 1
    assert facts(root)["cgroup"] == 1


def test_cgroup_v1_without_memory_controller(tmp_path):
    text = "\n".join(ln for ln in V1_HYBRID.splitlines() if "memory" not in ln) + "\n"
    root = tree(tmp_path, {"proc/self/mountinfo": text,
                           "sys/fs/cgroup/unified/cgroup.controllers": ""})
    assert cgroup_memory_version(root) is None


def test_cgroup_v2(tmp_path):
    root = tree(tmp_path, {"proc/self/mountinfo": V2,
                           "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma\n"})
    assert cgroup_memory_version(root) == 2
    assert facts(root)["cgroup"] == 2


def test_cgroup_v2_in_a_container(tmp_path):
    root = tree(tmp_path, {"proc/self/mountinfo": V2_CONTAINER,
                           "sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n"})
    assert cgroup_memory_version(root) == 2


@pytest.mark.parametrize("controllers", [None, "", "cpu io pids\n", "memory_recursiveprot\n"])
def test_cgroup_v2_without_memory(tmp_path, controllers):
    files = {"proc/self/mountinfo": V2}
    if controllers is not None:
        files["sys/fs/cgroup/cgroup.controllers"] = controllers
    assert cgroup_memory_version(tree(tmp_path, files)) is None


@pytest.mark.parametrize("mountinfo", [None, "", "garbage\n",
                                       "22 1 0:21 / /sys rw - sysfs sysfs rw\n"])
def test_cgroup_none(tmp_path, mountinfo):
    files = {} if mountinfo is None else {"proc/self/mountinfo": mountinfo}
    assert cgroup_memory_version(tree(tmp_path, files)) is None


# ---- features -----------------------------------------------------------------------

@pytest.fixture
def fake_facts(monkeypatch):
    current = {"thp": "madvise", "aslr": 2}
    monkeypatch.setattr(envmod, "facts", lambda root="/": dict(current))
    return current


@pytest.mark.parametrize("mode", ["always", "madvise"])
def test_thp_feature_present(fake_facts, mode):
    fake_facts["thp"] = mode
    assert feature("thp") == Feature(True)


def test_thp_feature_never(fake_facts):
    fake_facts["thp"] = "never"
    f = feature("thp")
    assert not f.ok
    assert f.reason == "transparent huge pages are off (mode 'never')"
    assert f.fix == "as root: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"


def test_thp_feature_unsupported(fake_facts):
    fake_facts["thp"] = "unsupported"
    f = feature("thp")
    assert not f.ok
    assert f.reason == "this kernel has no transparent huge pages"
    assert "CONFIG_TRANSPARENT_HUGEPAGE" in f.fix


@pytest.mark.parametrize("aslr, ok, word", [(2, True, ""), (1, False, "partial"), (0, False, "off")])
def test_aslr_feature(fake_facts, aslr, ok, word):
    fake_facts["aslr"] = aslr
    f = feature("aslr")
    assert f.ok is ok
    if not ok:
        assert word in f.reason and f"randomize_va_space={aslr}" in f.reason
        assert f.fix == "as root: sysctl -w kernel.randomize_va_space=2"


@pytest.mark.parametrize("name", ["setarch", "strace"])
def test_tool_features(monkeypatch, name):
    monkeypatch.setattr(envmod.shutil, "which", lambda tool: None)
    f = feature(name)
    assert not f.ok and "not installed" in f.reason and "apt-get install" in f.fix
    monkeypatch.setattr(envmod.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(envmod, "_runs", lambda argv: False)
    f = feature(name)
    assert not f.ok and "refused" in f.reason and "container" in f.fix
    monkeypatch.setattr(envmod, "_runs", lambda argv: True)
    assert feature(name) == Feature(True)


def test_strace_seccomp_feature(monkeypatch):
    """strace 5.3+ filters with --seccomp-bpf; an older one still traces (slower)."""
    monkeypatch.setattr(envmod.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(envmod, "_runs", lambda argv: "--seccomp-bpf" not in argv)
    f = feature("strace_seccomp")
    assert feature("strace").ok and not f.ok and "5.3" in f.reason and "5.3" in f.fix
    monkeypatch.setattr(envmod, "_runs", lambda argv: True)
    assert feature("strace_seccomp") == Feature(True)
    monkeypatch.setattr(envmod.shutil, "which", lambda tool: None)
    assert "not installed" in feature("strace_seccomp").reason      # no strace at all


def test_unknown_feature(fake_facts):
    with pytest.raises(KeyError):
        feature("gpu")


def test_numa_syscalls_feature(monkeypatch):
    """A container's seccomp profile refuses mbind/move_pages with EPERM: the numa lab
    skips, naming the call and the docker run option that allows it."""
    monkeypatch.setattr(envmod, "numa_syscall_refused", lambda: ("move_pages", 1))
    f = feature("numa_syscalls")
    assert not f.ok and "move_pages() fails with EPERM" in f.reason and "seccomp" in f.reason
    assert "--security-opt seccomp=unconfined" in f.fix
    monkeypatch.setattr(envmod, "numa_syscall_refused", lambda: ("get_mempolicy", 38))
    f = feature("numa_syscalls")
    assert not f.ok and "no NUMA support" in f.reason and "VM=1" in f.fix
    monkeypatch.setattr(envmod, "numa_syscall_refused", lambda: None)
    assert feature("numa_syscalls") == Feature(True)


def test_numa_syscall_probe_runs_here():
    refused = envmod.numa_syscall_refused()
    assert refused is None or (refused[0] in ("get_mempolicy", "mbind", "move_pages")
                               and refused[1] in (1, 38))


def test_a_snapshot_replaces_the_probes(monkeypatch):
    """A batch driver probes once and hands facts and features to its workers."""
    monkeypatch.setattr(envmod, "_GIVEN", {})
    snap = envmod.snapshot(["thp", "strace"])
    assert snap["facts"] == envmod.facts() and set(snap["features"]) == {"thp", "strace"}
    given = {"facts": {**snap["facts"], "page_size": 65536},
             "features": {"thp": [False, "told so", "nothing"], "bad": "x"}}
    envmod.use_snapshot(json.loads(json.dumps(given)))

    def no_probe(name):
        raise AssertionError(f"probed {name}")
    monkeypatch.setattr(envmod, "_feature", no_probe)
    assert envmod.facts()["page_size"] == 65536
    assert envmod.feature("thp") == Feature(False, "told so", "nothing")
    with pytest.raises(AssertionError, match="probed strace"):    # not given: probed
        envmod.feature("strace")
