#!/usr/bin/env python3
"""vm/build.py - fetch and cache what memlab's QEMU guest needs, under build/vm/.

Usage:
  vm/build.py              make sure the guest is ready (a second run does nothing)
  vm/build.py --refresh    resolve linux-image-amd64 again (after a Debian kernel update)
  vm/build.py --quiet      print only errors

Steps, each cached and each failing with a message that names it:
  1. host packages  qemu-system-x86, busybox-static, cpio, numactl: the lines of
                    deps/packages.txt with purpose "vm", installed by `deps/install vm`
                    (apt-get as root; otherwise it prints the command to run).
  2. kernel         linux-image-amd64 -> linux-image-<version> (apt-cache depends),
                    `apt-get download`, then keep only vmlinuz, its config and the
                    modules the guest loads: 9p, 9pnet_virtio, virtio_pci and what
                    they depend on (read from each module's .modinfo, like
                    `modinfo -F depends`), in load order.
                    -> build/vm/kernel/<version>/
  3. initramfs      static busybox + vm/init + those modules, as a newc cpio.gz.
                    -> build/vm/initramfs-<version>-<hash>.cpio.gz (the hash covers
                    its inputs, so editing vm/init rebuilds it)
The result is described in build/vm/guest.json, which grader/vm.py reads.
Standard library only; see docs/vm.md.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
KERNEL_META = "linux-image-amd64"
# what /init loads; their dependencies are added from the modules themselves
# virtio_blk and ext4: a scratch disk, a real disk-backed filesystem whose page
# cache can be reclaimed (the cgroup lab needs one; tmpfs pages cannot go without swap)
ROOT_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "virtio_blk", "crc32c_generic", "ext4"]
HOST_TOOLS = {  # command -> Debian package providing it
    "qemu-system-x86_64": "qemu-system-x86",
    "cpio": "cpio",
    "numactl": "numactl",
}
BUSYBOX = Path("/bin/busybox")
FORMAT = 2  # bump when the layout of build/vm/ changes

quiet = False
changed: list[str] = []  # what this run built (nothing when everything was cached)


class StepError(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")


def say(msg: str) -> None:
    if not quiet:
        print(f"vm: {msg}", file=sys.stderr, flush=True)


def run(step: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run argv; a failure raises StepError naming the step, the command and its stderr."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, **kw)
    except OSError as e:
        raise StepError(step, f"cannot run {argv[0]}: {e.strerror}") from None
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip()
        raise StepError(step, f"`{' '.join(argv)}` failed (exit {p.returncode})"
                        + (f":\n{err}" if err else ""))
    return p


# ---- ELF: just enough to read a module's .modinfo and to tell a static binary

def _elf_sections(data: bytes) -> dict[str, bytes]:
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    _, _, _, _, stroff, strsize = headers[shstrndx]
    names = data[stroff:stroff + strsize]
    out = {}
    for name_off, _type, _flags, _addr, off, size in headers:
        name = names[name_off:names.index(b"\0", name_off)].decode()
        out[name] = data[off:off + size]
    return out


def modinfo(data: bytes) -> dict[str, str]:
    """The key=value pairs of a kernel module's .modinfo section (name, depends, ...)."""
    info: dict[str, str] = {}
    for item in _elf_sections(data).get(".modinfo", b"").split(b"\0"):
        if b"=" in item:
            k, v = item.decode("utf-8", "replace").split("=", 1)
            info.setdefault(k, v)
    return info


def is_static(path: Path) -> bool:
    """True if the ELF executable at path has no program interpreter (PT_INTERP)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


# ---- step 1: host packages

def vm_packages() -> list[str]:
    pkgs = []
    for line in (PROJECT / "deps" / "packages.txt").read_text().splitlines():
        f = line.split()
        if len(f) >= 2 and not f[0].startswith("#") and f[1] == "vm":
            pkgs.append(f[0])
    return pkgs


def host_packages() -> None:
    missing = [t for t in HOST_TOOLS if not shutil.which(t)]
    busybox_ok = BUSYBOX.is_file() and is_static(BUSYBOX)
    if not missing and busybox_ok:
        return
    what = missing + ([] if busybox_ok else ["a static /bin/busybox"])
    say(f"host packages: missing {', '.join(what)}; running deps/install vm")
    p = subprocess.run([str(PROJECT / "deps" / "install"), "vm"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise StepError("host packages", p.stdout.decode("utf-8", "replace").strip()
                        or f"deps/install vm failed (exit {p.returncode})")
    still = [t for t in HOST_TOOLS if not shutil.which(t)]
    if still:
        raise StepError("host packages", f"still missing after deps/install vm: {', '.join(still)}")
    if not (BUSYBOX.is_file() and is_static(BUSYBOX)):
        raise StepError("host packages", f"{BUSYBOX} is not a static binary; "
                        "install busybox-static (it replaces the dynamic busybox package)")


# ---- step 2: the kernel

def _apt_update(step: str) -> bool:
    """apt-get update when root (stale or empty package lists); False if not root."""
    if os.geteuid() != 0:
        return False
    say("apt-get update (the package lists are missing or stale)")
    run(step, ["apt-get", "update", "-q"])
    return True


def resolve_kernel() -> str:
    """linux-image-amd64 -> the versioned package it depends on today."""
    step = f"kernel: resolving {KERNEL_META}"
    for attempt in (1, 2):
        p = subprocess.run(["apt-cache", "depends", KERNEL_META], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in p.stdout.splitlines():
            k, _, v = line.strip().partition(":")
            v = v.strip().strip("<>")
            if k in ("Depends", "|Depends") and v.startswith("linux-image-"):
                return v
        if attempt == 1 and _apt_update(step):
            continue
        hint = "" if os.geteuid() == 0 else " (run: sudo apt-get update)"
        raise StepError(step, f"`apt-cache depends {KERNEL_META}` names no linux-image package"
                        f"{hint}: {p.stderr.strip() or p.stdout.strip()}")
    raise AssertionError


def download(pkg: str, dest: Path) -> Path:
    step = f"kernel: apt-get download {pkg}"
    dest.mkdir(parents=True, exist_ok=True)
    debs = sorted(dest.glob(f"{pkg}_*.deb"))  # complete: apt-get moves it in when done
    if debs:
        return debs[-1]
    argv = ["apt-get", "download", "-q", pkg]
    if os.geteuid() == 0:  # the _apt sandbox user cannot write into build/
        argv[2:2] = ["-o", "APT::Sandbox::User=root"]
    try:
        run(step, argv, cwd=dest)
    except StepError:
        if not _apt_update(step):
            raise
        run(step, argv, cwd=dest)
    debs = sorted(dest.glob(f"{pkg}_*.deb"))
    if not debs:
        raise StepError(step, f"apt-get succeeded but no {pkg}_*.deb appeared in {dest}")
    return debs[-1]


def _read_module(path: Path) -> bytes:
    name = path.name
    if name.endswith(".ko"):
        return path.read_bytes()
    if name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    if name.endswith(".ko.zst"):
        return run("kernel: zstd", ["zstd", "-dc", str(path)]).stdout
    raise ValueError(name)


def decompress_vmlinuz(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside a bzImage (xz or gzip), or None. QEMU boots it directly
    through its PVH entry point: under TCG that skips ~3 s of decompressing in the guest."""
    for magic, decomp in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
                          (b"\x1f\x8b\x08\x00", lambda b: zlib.decompressobj(31).decompress(b))):
        at = bzimage.find(magic)
        while at >= 0:
            try:
                elf = decomp(bzimage[at:])
            except (lzma.LZMAError, zlib.error):
                elf = b""
            if elf[:4] == b"\x7fELF":
                return elf
            at = bzimage.find(magic, at + 1)
    return None


def extract_kernel(deb: Path, kdir: Path, pkg: str) -> None:
    """vmlinuz, config and the needed modules (decompressed, in load order) into kdir."""
    step = f"kernel: extracting {deb.name}"
    kdir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="extract-", dir=kdir.parent))
    try:
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        x = subprocess.run(["tar", "-x", "-C", str(work)], stdin=tar.stdout,
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        tar.stdout.close()
        err = tar.stderr.read().decode("utf-8", "replace")
        if tar.wait() != 0 or x.returncode != 0:
            raise StepError(step, (err + x.stderr.decode("utf-8", "replace")).strip()
                            or "dpkg-deb | tar failed")
        vmlinuz = sorted(work.glob("boot/vmlinuz-*"))
        if not vmlinuz:
            raise StepError(step, f"no boot/vmlinuz-* in {deb.name}")
        kver = vmlinuz[-1].name[len("vmlinuz-"):]
        moddir = next((d for d in (work / "lib/modules" / kver, work / "usr/lib/modules" / kver)
                       if d.is_dir()), None)
        if moddir is None:
            raise StepError(step, f"no lib/modules/{kver}/ in {deb.name}")
        builtin = set()
        if (moddir / "modules.builtin").is_file():
            builtin = {Path(l).name.split(".ko")[0].replace("-", "_")
                       for l in (moddir / "modules.builtin").read_text().split()}
        mods: dict[str, tuple[Path, list[str]]] = {}
        for path in moddir.rglob("*.ko*"):
            if not any(path.name.endswith(s) for s in (".ko", ".ko.xz", ".ko.gz", ".ko.zst")):
                continue
            try:
                info = modinfo(_read_module(path))
            except (ValueError, struct.error, IndexError, lzma.LZMAError, OSError) as e:
                raise StepError(step, f"cannot read {path.relative_to(work)}: {e}") from None
            name = info.get("name") or path.name.split(".ko")[0].replace("-", "_")
            mods[name] = (path, [d for d in info.get("depends", "").split(",") if d])
        order: list[str] = []

        def visit(name: str, chain: list[str]) -> None:
            if name in order:
                return
            if name not in mods:
                if name in builtin:
                    return
                raise StepError(step, f"module {name} (needed by {' <- '.join(chain)}) "
                                f"is neither in {deb.name} nor built into the kernel")
            if name in chain:
                raise StepError(step, f"circular module dependency: {' -> '.join(chain + [name])}")
            for dep in mods[name][1]:
                visit(dep, chain + [name])
            order.append(name)

        for m in ROOT_MODULES:
            visit(m, [])
        stage = kdir.with_name(kdir.name + ".tmp")
        shutil.rmtree(stage, ignore_errors=True)
        (stage / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz[-1], stage / "vmlinuz")
        vmlinux = decompress_vmlinuz(vmlinuz[-1].read_bytes())
        cfg = work / "boot" / f"config-{kver}"
        if vmlinux and cfg.is_file() and "CONFIG_PVH=y" in cfg.read_text().splitlines():
            (stage / "vmlinux").write_bytes(vmlinux)
        if cfg.is_file():
            shutil.copy2(cfg, stage / "config")
        for name in order:
            (stage / "modules" / f"{name}.ko").write_bytes(_read_module(mods[name][0]))
        (stage / "modules" / "order").write_text("".join(f"{n}\n" for n in order))
        boot = "vmlinux" if (stage / "vmlinux").is_file() else "vmlinuz"
        (stage / "kernel.json").write_text(json.dumps(
            {"format": FORMAT, "package": pkg, "deb": deb.name, "kver": kver, "boot": boot,
             "modules": order, "roots": ROOT_MODULES},
            indent=1) + "\n")
        shutil.rmtree(kdir, ignore_errors=True)
        stage.rename(kdir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kernel_ok(kdir: Path) -> bool:
    try:
        info = json.loads((kdir / "kernel.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("format") == FORMAT and (kdir / info["boot"]).is_file() \
        and info.get("roots") == ROOT_MODULES   # the module list changed: extract again


def kernel(vmdir: Path, refresh: bool) -> dict:
    """The cached kernel's description ({package, kver, modules, dir}); fetched if needed."""
    current = vmdir / "kernel" / "current.json"
    pkg = None
    if not refresh and current.is_file():
        pkg = json.loads(current.read_text())["package"]
    else:
        pkg = resolve_kernel()
    kdir = vmdir / "kernel" / pkg
    if not _kernel_ok(kdir):
        t = time.monotonic()
        say(f"kernel: downloading {pkg} (Debian's stock kernel, about 70 MB)")
        deb = download(pkg, vmdir / "download")
        say(f"kernel: extracting vmlinuz and the 9p/virtio modules from {deb.name}")
        extract_kernel(deb, kdir, pkg)
        deb.unlink()
        if not any(deb.parent.iterdir()):
            deb.parent.rmdir()
        say(f"kernel: {pkg} ready in {time.monotonic() - t:.1f} s")
        changed.append("kernel")
    text = json.dumps({"package": pkg}) + "\n"
    if not current.is_file() or current.read_text() != text:
        current.write_text(text)
    info = json.loads((kdir / "kernel.json").read_text())
    info["dir"] = str(kdir)
    return info


# ---- step 3: the initramfs

def initramfs(vmdir: Path, kinfo: dict) -> Path:
    kdir = Path(kinfo["dir"])
    init = HERE / "init"
    if not init.is_file():
        raise StepError("initramfs", f"{init} is missing")
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    inputs = [init, BUSYBOX, kdir / "modules" / "order"] + \
        [kdir / "modules" / f"{m}.ko" for m in kinfo["modules"]]
    for p in inputs:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    out = vmdir / f"initramfs-{kinfo['kver']}-{h.hexdigest()[:12]}.cpio.gz"
    if out.is_file():
        return out
    say(f"initramfs: building {out.name}")
    changed.append("initramfs")
    stage = Path(tempfile.mkdtemp(prefix="initramfs-", dir=vmdir))
    try:
        for d in ("bin", "dev", "proc", "sys", "host", "tmp", "modules"):
            (stage / d).mkdir()
        shutil.copy2(BUSYBOX, stage / "bin" / "busybox")
        # the applets as symlinks now: `busybox --install` at boot costs ~0.5 s under TCG
        applets = run("initramfs: busybox --list", [str(BUSYBOX), "--list"]).stdout.split()
        for a in applets:
            name = a.decode()
            if name != "busybox" and "/" not in name:
                (stage / "bin" / name).symlink_to("busybox")
        shutil.copy2(init, stage / "init")
        (stage / "init").chmod(0o755)
        for m in kinfo["modules"]:
            shutil.copy2(kdir / "modules" / f"{m}.ko", stage / "modules" / f"{m}.ko")
        shutil.copy2(kdir / "modules" / "order", stage / "modules" / "order")
        names = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
        p = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=stage,
                           input=("\n".join(names) + "\n").encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise StepError("initramfs", "cpio failed: " + p.stderr.decode("utf-8", "replace"))
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(gzip.compress(p.stdout, compresslevel=6, mtime=0))
        tmp.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for old in vmdir.glob("initramfs-*.cpio.gz"):
        if old != out:
            old.unlink()
    return out


def build(vmdir: Path, refresh: bool = False) -> dict:
    """Every step; returns (and writes to vmdir/guest.json) the guest's description."""
    vmdir.mkdir(parents=True, exist_ok=True)
    with open(vmdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds at once wait for each other
        for name, fn in (("host packages", host_packages),
                         ("kernel", lambda: kernel(vmdir, refresh)),
                         ("initramfs", lambda: initramfs(vmdir, kinfo))):
            try:
                res = fn()
            except OSError as e:
                raise StepError(name, f"{e.filename + ': ' if e.filename else ''}"
                                f"{e.strerror or e}") from None
            if name == "kernel":
                kinfo = res
        initrd = res
        guest = {"package": kinfo["package"], "kver": kinfo["kver"],
                 "kernel": str(Path(kinfo["dir"]) / kinfo["boot"]), "initrd": str(initrd),
                 "modules": kinfo["modules"]}
        path = vmdir / "guest.json"
        text = json.dumps(guest, indent=1) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        return guest


def main(argv: list[str] | None = None) -> int:
    global quiet
    p = argparse.ArgumentParser(prog="vm/build.py", description=__doc__.split("\n")[0])
    p.add_argument("--vm-dir", default=str(PROJECT / "build" / "vm"),
                   help="the cache (default: %(default)s)")
    p.add_argument("--refresh", action="store_true",
                   help=f"resolve {KERNEL_META} again instead of reusing the cached kernel")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    args = p.parse_args(argv)
    quiet = args.quiet
    try:
        guest = build(Path(args.vm_dir), args.refresh)
    except StepError as e:
        print(f"vm/build.py: {e}", file=sys.stderr)
        return 1
    if changed:
        say(f"guest ready: {guest['package']}, {Path(guest['initrd']).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
