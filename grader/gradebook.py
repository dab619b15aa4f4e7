"""A class's grades from the students' results.json: the CSV gradebook, JUnit XML, a table.

    gradebook_csv(rows, labs)     text of gradebook.csv: student, one column per lab, total, max, notes
    junit_xml(rows)               text of junit.xml: a testsuite per student, a testcase per check
    summary_table(rows, labs)     the table printed at the end of a batch

A row is a Row: the student's folder name and the results.json written for them
(grader/batch.py). Everything a student controls (names, messages quoting their
files or output) is made safe for its format: CSV cells cannot start a formula,
XML holds no control characters.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .report import points
from .submissions import csv_cell

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass
class Row:
    student: str
    doc: dict

    @property
    def batch(self) -> dict:
        return self.doc.get("extra_data", {}).get("batch", {})

    @property
    def labs(self) -> dict:
        return self.doc.get("extra_data", {}).get("labs", {})

    def lab_score(self, lab: str) -> float | None:
        entry = self.labs.get(lab)
        return None if entry is None else float(entry.get("score", 0))

    @property
    def total(self) -> float:
        return float(self.doc.get("score", 0))

    @property
    def max_score(self) -> float:
        return float(self.doc.get("extra_data", {}).get("max_score", 0))

    @property
    def failed(self) -> bool:
        """The grading itself failed or was refused (not merely a low score)."""
        return bool(self.batch.get("error") or self.batch.get("refused"))

    def notes(self, unsafe: bool = True) -> str:
        b = self.batch
        out = []
        if b.get("refused"):
            out.append(f"refused: {b['refused']}")
        if b.get("error"):
            out.append(f"error: {b['error']}")
        for lab, entry in self.labs.items():
            err = entry.get("error")
            if err and err not in ("refused",):
                why = b.get("lab_problems", {}).get(lab)
                out.append(f"{lab}: {err}" + (f" ({why})" if why and why not in err else ""))
        out += [n for n in b.get("notes", []) if isinstance(n, str)]
        if b.get("unsafe") and unsafe:
            out.append("UNSAFE: graded without a sandbox")
        return "; ".join(out)


def gradebook_csv(rows: list[Row], labs: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["student", *labs, "total", "max", "notes"])
    for r in rows:
        cells = [csv_cell(r.student)]
        for lab in labs:
            s = r.lab_score(lab)
            cells.append(points(s) if s is not None else "")
        cells += [points(r.total), points(r.max_score), csv_cell(r.notes())]
        w.writerow(cells)
    return buf.getvalue()


def _x(text) -> str:
    return _XML_BAD.sub("?", str(text))


def junit_xml(rows: list[Row]) -> str:
    suites = ET.Element("testsuites", name="memlab batch")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    t_all = 0.0
    for r in rows:
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        suite = ET.SubElement(suites, "testsuite", name=_x(r.student))
        props = ET.SubElement(suite, "properties")
        for k in ("score", "max_score"):
            v = r.total if k == "score" else r.max_score
            ET.SubElement(props, "property", name=k, value=points(v))
        for k in ("seed", "refused", "error", "unsafe"):
            if r.batch.get(k) not in (None, "", False):
                v = r.batch[k]
                ET.SubElement(props, "property", name=k,
                              value=str(v).lower() if isinstance(v, bool) else _x(v))
        for t in r.doc.get("tests", []):
            x = t.get("extra_data", {})
            lab, check = x.get("lab", "?"), x.get("check", "?")
            name = f"{check}: {t.get('name', '').split(': ', 1)[-1]}"
            if t.get("visibility") == "hidden":
                name += " [hidden]"
            case = ET.SubElement(suite, "testcase", classname=_x(f"{r.student}.{lab}"),
                                 name=_x(name), time="0")
            counts["tests"] += 1
            verdict = x.get("verdict")
            message = _x(x.get("message") or "")
            if verdict == "skip":
                ET.SubElement(case, "skipped", message=message)
                counts["skipped"] += 1
            elif verdict == "error":
                e = ET.SubElement(case, "error", message=message, type="grader")
                e.text = _x(t.get("output", ""))
                counts["errors"] += 1
            elif t.get("status") == "failed":
                f = ET.SubElement(case, "failure", message=message,
                                  type=_x(x.get("kind") or "check"))
                f.text = _x(t.get("output", ""))
                counts["failures"] += 1
        t = float(r.doc.get("execution_time", 0) or 0)
        t_all += t
        suite.set("time", f"{t:.2f}")
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        suites.set(k, str(v))
    suites.set("time", f"{t_all:.2f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def summary_table(rows: list[Row], labs: list[str], width: int = 100) -> str:
    name_w = max([len("student")] + [len(r.student) for r in rows])
    name_w = min(name_w, 32)
    lab_w = {lab: max(len(lab), 5) for lab in labs}
    head = f"  {'student':<{name_w}}  " + "  ".join(f"{lab:>{lab_w[lab]}}" for lab in labs) + \
        f"  {'total':>9}  notes"
    out = [head]
    for r in rows:
        cells = []
        for lab in labs:
            s = r.lab_score(lab)
            entry = r.labs.get(lab, {})
            cell = "-" if s is None else points(s)
            if entry.get("error") == "not submitted":
                cell = "n/s"
            cells.append(f"{cell:>{lab_w[lab]}}")
        total = f"{points(r.total)}/{points(r.max_score)}"
        note = r.notes(unsafe=False)
        room = max(width - len(head) + 5, 30)
        if len(note) > room:
            note = note[: room - 3] + "..."
        out.append(f"  {r.student[:name_w]:<{name_w}}  " + "  ".join(cells) + f"  {total:>9}  {note}")
    return "\n".join(out)
