"""make doctor against fake /proc and /sys trees: v1 hybrid, pure v2, no cgroup
access, an unprivileged container, two NUMA nodes."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import ROOT

from grader import doctor
from grader import env as envmod

V1_MOUNTS = """\
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_CGROUP = "4:memory:/student\n0::/\n"
V2_MOUNTS = "30 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
V2_CGROUP = "0::/user.slice/session\n"
V2_RO_MOUNTS = "30 22 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"


def tree(tmp_path, *, mounts, cgroup, own_dir, nodes=1, thp="always [madvise] never", aslr=2,
         psi=True, container=False, writable=True, cap_eff="000001ffffffffff", uid=0):
    r = tmp_path / "root"
    files = {
        "proc/self/mountinfo": mounts, "proc/self/cgroup": cgroup,
        "proc/self/status": f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapEff:\t{cap_eff}\n",
        "proc/sys/kernel/randomize_va_space": f"{aslr}\n",
        "sys/kernel/mm/transparent_hugepage/enabled": thp + "\n",
        "sys/kernel/mm/transparent_hugepage/defrag": "always defer [madvise] never\n",
        "sys/kernel/mm/transparent_hugepage/hpage_pmd_size": "2097152\n",
    }
    if psi:
        files["proc/pressure/memory"] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    for n in range(nodes):
        files[f"sys/devices/system/node/node{n}/distance"] = " ".join(
            "10" if m == n else "21" for m in range(nodes)) + "\n"
    if own_dir:
        files[own_dir.lstrip("/") + "/cgroup.procs"] = "1\n"
        if "cgroup2" in mounts:
            files["sys/fs/cgroup/cgroup.controllers"] = "cpu memory pids\n"
    if container:
        files[".dockerenv"] = ""
    for path, text in files.items():
        p = r / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    if own_dir and not writable:
        d = r / own_dir.lstrip("/")
        d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return str(r)


@pytest.fixture(autouse=True)
def fresh_facts():
    envmod.facts.cache_clear()
    yield
    envmod.facts.cache_clear()


def plan_reasons(data, lab):
    return {name: reason for reason, _, names in data["labs"][lab] for name in names}


def test_v1_hybrid(tmp_path):
    root = tree(tmp_path, mounts=V1_MOUNTS, cgroup=V1_CGROUP, own_dir="/sys/fs/cgroup/memory/student")
    data = doctor.collect(ROOT, root)
    assert data["facts"]["cgroup"] == 1
    assert data["features"]["memcg"]["ok"], data["features"]["memcg"]
    assert not data["features"]["cgroup_v2"]["ok"]
    assert data["labs"]["oom"] == [] and data["labs"]["cgroup"] == []
    assert set(plan_reasons(data, "numa")) == {"topology", "interleave", "preferred", "migrate"}
    text = doctor.render(data)
    assert "v1 (the memory controller is on a v1 hierarchy)" in text
    assert "oom        runs in full" in text


def test_pure_v2_two_nodes(tmp_path):
    root = tree(tmp_path, mounts=V2_MOUNTS, cgroup=V2_CGROUP, own_dir="/sys/fs/cgroup/user.slice/session",
                nodes=2)
    data = doctor.collect(ROOT, root)
    assert data["facts"]["cgroup"] == 2
    assert data["facts"]["numa_nodes"] == 2
    assert data["facts"]["numa_distances"] == [[10, 21], [21, 10]]
    assert data["features"]["memcg"]["ok"] and data["features"]["cgroup_v2"]["ok"]
    assert all(groups == [] for groups in data["labs"].values()), data["labs"]
    assert "numa       runs in full" in doctor.render(data)


def test_no_cgroup_access(tmp_path):
    """A user (uid 1000, no capabilities) whose cgroup belongs to someone else."""
    root = tree(tmp_path, mounts=V2_MOUNTS, cgroup=V2_CGROUP, own_dir="/sys/fs/cgroup/user.slice/session",
                uid=1000, cap_eff="0000000000000000")
    if os.geteuid() != 0:
        os.chmod(os.path.join(root, "sys/fs/cgroup/user.slice/session"), 0o555)
    data = doctor.collect(ROOT, root)
    assert not data["features"]["memcg"]["ok"]
    assert "not writable" in data["features"]["memcg"]["reason"]
    assert not data["root_user"]
    assert "user          not root" in doctor.render(data)


def test_no_memory_controller(tmp_path):
    root = tree(tmp_path, mounts="30 22 0:27 / /proc rw - proc proc rw\n", cgroup="0::/\n", own_dir=None)
    data = doctor.collect(ROOT, root)
    assert data["facts"]["cgroup"] is None
    reasons = plan_reasons(data, "oom")
    assert reasons and all("no memory cgroup controller" in r for r in reasons.values())
    assert "a memory cgroup can be created: no" in doctor.render(data)


def test_unprivileged_container(tmp_path):
    root = tree(tmp_path, mounts=V2_RO_MOUNTS, cgroup="0::/\n", own_dir="/sys/fs/cgroup", container=True,
                cap_eff="00000000a80425fb", thp="always madvise [never]", aslr=2)
    data = doctor.collect(ROOT, root)
    assert data["facts"]["container"] is True
    assert not data["features"]["memcg"]["ok"]
    assert "read-only" in data["features"]["memcg"]["reason"]
    assert "--privileged" in data["features"]["memcg"]["fix"]
    assert not data["cap_sys_admin"] and not data["cap_sys_resource"]
    # THP off: the faults lab's THP checks skip with the fix
    faults = plan_reasons(data, "faults")
    assert set(faults) == {"thp_faults", "thp_backed"}
    oom = plan_reasons(data, "oom")
    assert {"adj_picks_the_victim", "biggest_is_the_victim", "group_counters"} <= set(oom)
    text = doctor.render(data)
    assert "container     yes" in text and "--privileged" in text


def test_this_machine_renders(root):
    data = doctor.collect(root)
    text = doctor.render(data)
    assert text.startswith("memlab doctor")
    for lab in data["labs"]:
        assert lab in text
