"""Functions that lab.toml expressions may call, beyond the builtins of expr.py.

Each takes plain values or namespaces (a checkpoint is an NS whose `maps` is a
list of VMA namespaces: start, end, size, perms, offset, dev, inode, path, kind).
Add a function here, document it in docs/lab-format.md, and test it in
tests/test_functions.py.
"""

from __future__ import annotations

from .expr import NS


def functions(names: dict) -> dict:
    all_cps = names.get("_all_cps", {})

    def has_cp(name):
        return names["cp"].has(name)

    def anon_kb(cp):
        return sum(v.get("size") for v in cp.get("maps")
                   if v.get("kind") == "anon" and "w" in v.get("perms")) // 1024

    def vma_at(cp, addr):
        if not isinstance(addr, int):
            return None
        for v in cp.get("maps"):
            if v.get("start") <= addr < v.get("end"):
                return v
        return None

    def count_cp(name):
        return len(all_cps.get(name, []))

    def figs(prefix):
        """Figures whose name starts with prefix, as a {rest: value} dict."""
        return {k[len(prefix):]: v for k, v in names["fig"].items() if k.startswith(prefix)}

    def between(a_seq, b_seq, call=None):
        """Traced syscalls after message a_seq and before message b_seq."""
        return [e for e in names["trace"] if a_seq < e.get("at") < b_seq
                and (call is None or e.get("call") == call)]

    return {"has_cp": has_cp, "anon_kb": anon_kb, "vma_at": vma_at, "count_cp": count_cp,
            "figs": figs, "between": between}
