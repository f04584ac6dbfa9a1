"""The student-facing export: each student's own results of a release, once the institution lets students see it.

Publish writes the institution's release (faculty and the exam office see it at once); the students' copy follows
the institution's `student_release` (auto: at once; after_faculty_approval: after a faculty member approves the
day in the Airflow UI; at HH:MM: at that local time the morning after). Layout, per release version N:

    releases/<prefix>/<day>/students/v<N>/<student>.json   one document per student: only that student's rows
    releases/<prefix>/<day>/students/v<N>/_manifest.json   written last: the version is out to students

A student's document holds, per submission, the total and per answer the score, the status, the feedback (the
grader's rationale or the reviewer's comment) and which rubric items were met (docs/releases.md). Never another
student's row, and nothing of the grading machinery: no model name, confidence, suggested score, review reason
or evidence check. A version is written to students once (the manifest is the marker; a rerun rewrites the same
keys), with a `students_exported` audit line.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from itertools import groupby
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gradeflow.core import db, storage
from gradeflow.core.config import Institution

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg

log = logging.getLogger(__name__)

STUDENT_ANSWER_FIELDS = ("question_id", "question_type", "status", "score", "max_points", "feedback", "criteria")
STUDENT_SUBMISSION_FIELDS = ("exam_id", "submission_id", "total_score", "total_max", "percent", "complete",
                             "answers")
MANIFEST = "_manifest.json"
FETCH_ROWS = 5_000  # rows per round trip of the server-side cursor: memory holds one block and one student


def folder(inst: Institution, day: date | str, version: int) -> str:
    """releases/<prefix>/<day>/students/v<N>: one release version's student documents."""
    return inst.key("releases", day, "students", f"v{version}")


def student_key(inst: Institution, day: date | str, version: int, student_id: str) -> str:
    """The key of one student's document; the id is percent-encoded, so any id is one safe path segment."""
    return f"{folder(inst, day, version)}/{quote(str(student_id), safe='')}.json"


def manifest_key(inst: Institution, day: date | str, version: int) -> str:
    return f"{folder(inst, day, version)}/{MANIFEST}"


def exported(s3, inst: Institution, day: date | str, version: int) -> bool:
    """Whether students already have this version (its manifest is written last)."""
    return storage.exists(s3, manifest_key(inst, day, version))


def _rows(conn: psycopg.Connection, inst: Institution, release_id: int) -> Iterator[dict]:
    """The release's student rows, streamed through a server-side cursor in student order."""
    from psycopg.rows import dict_row

    db.check_tenant(conn, inst.id)
    with conn.cursor(name="gradeflow_student_rows", row_factory=dict_row) as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(db.sql("publish/student_rows"), {"inst": inst.id, "release_id": release_id})
        yield from cur


def student_document(inst: Institution, day: date | str, version: int, student_id: str, rows: list[dict]) -> dict:
    """One student's results: per submission the total and each answer's score, status and feedback."""
    submissions = []
    for (exam_id, submission_id), answers in groupby(rows, key=lambda r: (r["exam_id"], r["submission_id"])):
        answers = list(answers)
        total = sum(a["score"] or 0.0 for a in answers)
        total_max = sum(a["max_points"] or 0.0 for a in answers)
        submissions.append({
            "exam_id": exam_id, "submission_id": submission_id, "total_score": round(total, 4),
            "total_max": total_max, "percent": round(100 * total / total_max, 2) if total_max else None,
            "complete": all(a["status"] == "graded" for a in answers),
            "answers": [{**{k: a[k] for k in STUDENT_ANSWER_FIELDS if k != "criteria"},
                         "criteria": json.loads(a["criteria"]) if a["criteria"] else None} for a in answers]})
    return {"institution_id": inst.id, "exam_day": str(day), "version": version, "student_id": student_id,
            "submissions": submissions}


def export_for_students(conn: psycopg.Connection, s3, inst: Institution, day: date, version: int,
                        actor: str, decision: dict[str, Any] | None = None) -> dict:
    """Write release `version` of the day for students (one document each, then the manifest); audit it.

    `decision` is the faculty approval that allowed it (who, when), or None for auto / at HH:MM.
    Returns the manifest. Idempotent: the same keys are rewritten on a rerun.
    """
    release = db.fetch_all(conn, "publish/version_release", {"inst": inst.id, "day": day, "version": version})
    if not release or release[0]["exported_at"] is None:
        raise LookupError(f"release v{version} of {inst.id} {day} does not exist or is not exported yet: the "
                          "institution's release is written first, students' copy after")
    students = answers = 0
    with conn.transaction():
        for student_id, rows in groupby(_rows(conn, inst, release[0]["release_id"]), key=lambda r: r["student_id"]):
            rows = list(rows)
            doc = student_document(inst, day, version, student_id, rows)
            storage.write_bytes(s3, student_key(inst, day, version, student_id),
                                json.dumps(doc, indent=1).encode(), "application/json")
            students, answers = students + 1, answers + len(rows)
    decision = decision or {}
    manifest = {"institution_id": inst.id, "exam_day": str(day), "version": version, "students": students,
                "answers": answers, "folder": folder(inst, day, version), "student_release": inst.student_release,
                "approved_by": decision.get("responded_by"), "approved_at": decision.get("responded_at")}
    storage.write_bytes(s3, manifest_key(inst, day, version), json.dumps(manifest, indent=1).encode(),
                        "application/json")
    with conn.transaction():
        db.audit(conn, actor, "students_exported", inst.id, day, manifest)
    log.info("Students' copy of %s %s v%d: %d students, %d answers under %s", inst.id, day, version, students,
             answers, folder(inst, day, version))
    return manifest


def decisions(conn: psycopg.Connection, inst: Institution, day: date) -> list[dict]:
    """The day's student exports and faculty decisions from the audit log, newest first (the report reads it)."""
    return db.fetch_all(conn, "publish/student_exports", {"inst": inst.id, "day": day})
