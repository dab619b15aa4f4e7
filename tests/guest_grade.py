"""Grade lab sources given on the command line and print the verdicts as JSON.

Run by tests/test_vm.py inside the QEMU guest (two nodes, cgroup v2), where the
host's pytest is not needed: python3 tests/guest_grade.py LAB SEED BUILD SRC...
(each SRC a folder holding <lab>/<lab>.c, already built on the host into BUILD/<n>)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import spec  # noqa: E402
from grader.grading import grade_lab  # noqa: E402


def main() -> int:
    lab_name, seed, build = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    lab = spec.load(ROOT / "labs" / lab_name)
    out = {}
    for i, src in enumerate(sys.argv[4:]):
        res = grade_lab(lab, ROOT, seed, build_dir=build / str(i), labs_src=Path(src))
        out[src] = {v.check.name: [v.status, v.message] for v in res.verdicts}
    print("GUEST-GRADE " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
