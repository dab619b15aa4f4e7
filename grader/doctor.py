"""`make doctor`: what this machine supports, and what each lab will do here.

collect(root) gathers the facts (grader.env), the capabilities a lab may need
(each with a reason and a fix when missing) and, for every lab, the checks that
will skip. With root != "/" (a fake /proc and /sys tree, for tests) nothing is
executed: capabilities are judged from the files alone.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import struct
import subprocess
from pathlib import Path

from . import cgroup as cgroupmod
from . import env as envmod
from .env import _read
from .spec import discover


def capabilities(root: str = "/") -> tuple[int, bool]:
    """(CapEff of this process, is root)."""
    status = _read(root, "/proc/self/status") or ""
    cap = 0
    uid = None
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            cap = int(line.split()[1], 16)
        elif line.startswith("Uid:"):
            uid = int(line.split()[1])
    return cap, (uid == 0 if uid is not None else os.geteuid() == 0)


def memcg_static(root: str) -> envmod.Feature:
    """Can a memory cgroup be created? Judged from the files (no mkdir)."""
    own = cgroupmod.own_memory_cgroup(os.path.join(root, "proc/self"))
    fix = "run as root; in a container: --privileged; or VM=1 for a QEMU guest"
    if own is None:
        return envmod.Feature(False, "no memory cgroup controller is mounted", fix)
    version, d = own
    mi = _read(root, "/proc/self/mountinfo") or ""
    for line in mi.splitlines():
        f = line.split()
        if len(f) > 5 and (d == f[4] or d.startswith(f[4].rstrip("/") + "/")) and "cgroup" in line:
            if "ro" in f[5].split(","):
                return envmod.Feature(False, f"the cgroup filesystem at {f[4]} is read-only "
                                      "(an unprivileged container)", fix)
    real = os.path.join(root, d.lstrip("/"))
    if not _writable(real, root):
        return envmod.Feature(False, f"the cgroup {d} is not writable", fix)
    return envmod.Feature(True)


def _writable(path: str, root: str) -> bool:
    """May the process the tree describes write into path? Its uid is taken from the
    tree's /proc/self/status, so a fake tree can describe another user."""
    if root == "/":
        return os.access(path, os.W_OK)
    cap, is_root = capabilities(root)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if is_root:
        return True
    status = _read(root, "/proc/self/status") or ""
    uid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:")), -1)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o200)
    return bool(st.st_mode & 0o002)


def perf_status() -> dict:
    perf = shutil.which("perf")
    out = {"installed": bool(perf), "software": False, "hardware": False}
    if not perf:
        return out
    for kind, event in (("software", "page-faults"), ("hardware", "instructions")):
        try:
            p = subprocess.run([perf, "stat", "-x,", "-e", event, "true"], capture_output=True,
                               text=True, timeout=10)
            first = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
            out[kind] = p.returncode == 0 and first[:1].isdigit()
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def pagemap_pfns() -> bool | None:
    """Does /proc/self/pagemap show page frame numbers here (needs CAP_SYS_ADMIN)?"""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        m = mmap.mmap(-1, page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m[0] = 1
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // page * 8)
            entry = struct.unpack("<Q", f.read(8))[0]
        del addr
        m.close()
        return bool(entry & ((1 << 55) - 1)) and bool(entry >> 63)
    except (OSError, ValueError, BufferError):
        return None


def features(root: str = "/") -> dict[str, envmod.Feature]:
    if root == "/":
        return {name: envmod.feature(name) for name in envmod.KNOWN_FEATURES}
    f = envmod.facts(root)
    thp_ok = f["thp"] in ("always", "madvise")
    out = {
        "thp": envmod.Feature(thp_ok, "" if thp_ok else f"THP mode is '{f['thp']}'",
                              "" if thp_ok else "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"),
        "aslr": envmod.Feature(f["aslr"] >= 2, "" if f["aslr"] >= 2 else
                               f"kernel.randomize_va_space={f['aslr']}",
                               "" if f["aslr"] >= 2 else "sysctl -w kernel.randomize_va_space=2"),
        "setarch": envmod.Feature(True), "strace": envmod.Feature(True),
        "numa_syscalls": envmod.Feature(True),
        "memcg": memcg_static(root),
        "cgroup_v2": envmod.Feature(f["cgroup"] == 2, "" if f["cgroup"] == 2 else
                                    "the memory controller is not on cgroup v2", "VM=1"),
        "psi": envmod.Feature(_read(root, "/proc/pressure/memory") is not None,
                              "no /proc/pressure/memory", "boot with psi=1"),
        "numa2": envmod.Feature(f["numa_nodes"] >= 2, "" if f["numa_nodes"] >= 2 else
                                f"this machine has {f['numa_nodes']} NUMA node",
                                "make lab-numa VM=1 runs it in a QEMU guest with two nodes"),
    }
    return out


def lab_plan(labs, feats: dict[str, envmod.Feature]) -> dict:
    """{lab: [(reason, fix, [check names])]}: the checks that will skip, grouped by reason."""
    plan = {}
    for lab in labs:
        groups: dict[tuple, list] = {}
        for check in lab.checks:
            needs = list(lab.runs[check.run].requires) + list(check.requires)
            missing = next((feats[n] for n in needs if n in feats and not feats[n].ok), None)
            if missing:
                groups.setdefault((missing.reason, missing.fix), []).append(check.name)
        plan[lab.name] = [(r, fx, names) for (r, fx), names in groups.items()]
    return plan


def collect(project: Path, root: str = "/") -> dict:
    facts = envmod.facts(root)
    cap, is_root = capabilities(root)
    feats = features(root)
    live = root == "/"
    data = {
        "facts": facts,
        "root_user": is_root,
        "cap_sys_admin": bool(cap >> 21 & 1),
        "cap_sys_resource": bool(cap >> 24 & 1),
        "features": {k: {"ok": v.ok, "reason": v.reason, "fix": v.fix} for k, v in feats.items()},
        "perf": perf_status() if live else None,
        "pagemap_pfns": pagemap_pfns() if live else None,
        "labs": lab_plan(discover(project / "labs"), feats),
    }
    return data


def _yes(b) -> str:
    return "yes" if b else "no" if b is not None else "unknown"


def render(d: dict) -> str:
    f = d["facts"]
    feat = d["features"]
    lines = ["memlab doctor: what this machine supports", ""]
    lines.append(f"  kernel        {f['kernel'] or '?'} ({f['arch']}), glibc {f['glibc']}, "
                 f"{f['cpus']} CPUs")
    lines.append(f"  pages         {f['page_size'] // 1024} KiB; THP {f['thp']} "
                 f"({f['pmd_size'] // (1 << 20)} MiB pages), defrag {f['thp_defrag'] or '?'}")
    lines.append("  zero page     " + ("yes: a read of fresh anonymous memory maps the shared zero page"
                                      if f["zero_page"] else
                                      "no: reads of fresh anonymous memory allocate (this kernel maps no zero page)"))
    lines.append(f"  ASLR          {f['aslr']} ({ {0: 'off', 1: 'partial', 2: 'full'}.get(f['aslr'], '?') })")
    cg = {1: "v1 (the memory controller is on a v1 hierarchy)", 2: "v2 (unified)",
          None: "no memory controller"}[f["cgroup"]]
    lines.append(f"  cgroups       {cg}; a memory cgroup can be created: "
                 f"{_yes(feat['memcg']['ok'])}" + ("" if feat["memcg"]["ok"] else
                                                     f" ({feat['memcg']['reason']})"))
    lines.append(f"  PSI           {_yes(feat['psi']['ok'])}")
    if d["perf"] is not None:
        p = d["perf"]
        lines.append("  perf          " + ("not installed" if not p["installed"] else
                                         f"software events: {_yes(p['software'])}; hardware events: "
                                         f"{_yes(p['hardware'])}"))
    if d["pagemap_pfns"] is not None or d["facts"]["kernel"]:
        lines.append(f"  pagemap PFNs  {_yes(d['pagemap_pfns'])} (needs CAP_SYS_ADMIN)")
    lines.append(f"  strace        {_yes(feat['strace']['ok'])}; setarch -R: {_yes(feat['setarch']['ok'])}")
    lines.append(f"  NUMA          {f['numa_nodes']} node{'s' if f['numa_nodes'] != 1 else ''}; "
                 f"NUMA system calls: {_yes(feat['numa_syscalls']['ok'])}")
    lines.append(f"  user          {'root' if d['root_user'] else 'not root'}; CAP_SYS_RESOURCE: "
                 f"{_yes(d['cap_sys_resource'])}; CAP_SYS_ADMIN: {_yes(d['cap_sys_admin'])}")
    lines.append(f"  container     {_yes(f['container'])}")
    lines += ["", "Labs on this machine:"]
    for lab, groups in d["labs"].items():
        if not groups:
            lines.append(f"  {lab:<10} runs in full")
            continue
        n = sum(len(names) for _, _, names in groups)
        lines.append(f"  {lab:<10} {n} check{'s' if n != 1 else ''} skip:")
        for reason, fix, names in groups:
            lines.append(f"             {', '.join(names)}: {reason}")
            if fix:
                lines.append(f"             fix: {fix}")
    return "\n".join(lines)
