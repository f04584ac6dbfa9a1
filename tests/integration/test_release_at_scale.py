"""The release path at scale (issue 9): the gate's state fingerprint computed in SQL, the release checking it
with one query, the export streamed from COPY into Parquet row groups. The promise under test stays
"nothing unvalidated is released": what the release copies is exactly what the gate checked."""

from __future__ import annotations

import io
import threading
import time
from datetime import date

import pyarrow.parquet as pq
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from gradeflow.release import publish

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put

NORTH = get_institution("northfield")
EXAM_DAY = date.fromisoformat(DAY)


def _day(conn, s3, submissions: int = 3) -> None:
    """A day graded by rule, its free-text answers waiting for the model (a state the gate passes)."""
    rows = [row for n in range(submissions) for row in answers_for(f"s{n}", f"st{n}")]
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, EXAM_DAY)
    prepare.grade_by_rule(conn, NORTH, EXAM_DAY)


# A test that asks for `day` starts on its own copy of the database `_day(conn, s3)` leaves (tests/conftest.py,
# fresh_database): the day is ingested and graded once per module, not once per test.
SNAPSHOTS = {"day": "day_database"}


@pytest.fixture(scope="module")
def day_database(databases, _s3_client):
    databases.new()
    stack.empty_bucket(_s3_client)
    with db.connect(institution="northfield") as conn:
        _day(conn, _s3_client)
    snapshot = databases.snapshot("day")
    yield snapshot
    databases.drop(snapshot)


@pytest.fixture
def day():
    """The test's database is its own copy of `_day`'s (three submissions graded by rule)."""


# Changes made behind the gate's back, in columns the release copies. The first two were outside the
# earlier fingerprint (ids and states only): a score edited in place, a question's points changed.
CHANGES = {
    "score edited in place": "UPDATE grades SET score = 0 WHERE grade_id = (SELECT min(grade_id) FROM grades "
                             "WHERE is_current AND score > 0)",
    "max points changed": "UPDATE questions SET max_points = max_points + 1 WHERE question_id = "
                          "(SELECT min(question_id) FROM grades)",
    "answer sent to review": "INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                             "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades "
                             "ORDER BY grade_id LIMIT 1",
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_state_changed_after_the_gate_is_not_released(day, conn, admin_conn, s3, change):
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    assert gate.success and gate.fingerprint.startswith("v2:")
    assert admin_conn.execute(CHANGES[change]).rowcount == 1
    with pytest.raises(publish.ReleaseBlocked, match="changed after validation"):
        publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM release_results").fetchone()[0] == 0


def test_the_fingerprint_names_the_state_not_the_moment(day, conn, s3):
    """The same state gives the same fingerprint (a rerun releases nothing new); a change gives another."""
    first = publish.validate(conn, NORTH, EXAM_DAY)
    again = publish.validate(conn, NORTH, EXAM_DAY)
    assert first.fingerprint == again.fingerprint == publish.state_fingerprint(conn, NORTH, EXAM_DAY)
    answers = publish.day_counts(conn, NORTH, EXAM_DAY)["answers"]
    assert first.fingerprint.startswith(f"v2:{answers}:")
    released = publish.release(conn, NORTH, EXAM_DAY, again.validation_id)
    assert released["new"] and released["row_count"] == answers
    assert not publish.release(conn, NORTH, EXAM_DAY, first.validation_id)["new"]
    conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                 "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades LIMIT 1")
    assert publish.state_fingerprint(conn, NORTH, EXAM_DAY) != first.fingerprint


def test_the_release_copies_the_rows_it_fingerprinted_from_one_evaluation(day, conn, admin_conn, s3):
    """Issue 18: the release evaluates the day's outcome rows once and writes them in the same statement
    (publish/insert_release_results), each with its hash: the release's rows sum to the fingerprint the gate
    validated (state_fingerprint's for the same state), and they hold the values answer_lifecycle gives (graded
    by rule, waiting for the model, in review)."""
    admin_conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                       "SELECT a.institution_id, a.submission_id, a.question_id, a.exam_day, 'manual' FROM answers a "
                       "WHERE NOT EXISTS (SELECT 1 FROM grades g WHERE g.submission_id = a.submission_id "
                       "AND g.question_id = a.question_id) ORDER BY 1, 2, 3 LIMIT 1")
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    assert gate.fingerprint == publish.state_fingerprint(conn, NORTH, EXAM_DAY)
    released = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    view = ("SELECT l.exam_id, l.submission_id, s.student_id, l.question_id, "
            "CASE WHEN l.state = 'graded' THEN 'graded' ELSE 'pending' END, l.score, q.max_points, l.grader, "
            "l.pending_reason, l.review_reason, q.qtype FROM answer_lifecycle l "
            "JOIN submissions s ON s.institution_id = l.institution_id AND s.submission_id = l.submission_id "
            "JOIN questions q ON q.institution_id = l.institution_id AND q.exam_id = l.exam_id "
            "AND q.question_id = l.question_id "
            "WHERE l.institution_id = 'northfield' AND l.exam_day = %s ORDER BY 2, 4")
    copied = ("SELECT exam_id, submission_id, student_id, question_id, status, score, max_points, grader, "
              "pending_reason, review_reason, question_type FROM release_results WHERE release_id = %s ORDER BY 2, 4")
    expected = conn.execute(view, (EXAM_DAY,)).fetchall()
    assert conn.execute(copied, (released["release_id"],)).fetchall() == expected
    summed = conn.execute("SELECT 'v2:' || count(*) || ':' || sum(row_hash), count(row_hash) FROM release_results "
                          "WHERE release_id = %s", (released["release_id"],)).fetchone()
    assert summed == (gate.fingerprint, len(expected))
    assert conn.execute("SELECT fingerprint, row_count FROM releases WHERE release_id = %s",
                        (released["release_id"],)).fetchone() == (gate.fingerprint, len(expected))
    assert {row[4] for row in expected} == {"graded", "pending"}
    assert "in_review" in {row[8] for row in expected}


def test_a_release_that_waited_for_another_sees_what_that_one_released(day, conn, tenant_conn, admin_conn, s3):
    """Two releases of one day at once (a manual rerun during the scheduled publish): the second waits for the
    first and then sees its release, so it numbers no second version 1 and reuses it."""
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    first = tenant_conn("northfield")
    lock = (f"release:northfield:{EXAM_DAY}",)
    first.execute("SELECT pg_advisory_lock(gradeflow_lock_key(%s))", lock)  # the first release holds the day...
    waited: dict = {}
    second = threading.Thread(target=lambda: waited.update(publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)))
    second.start()
    deadline = time.monotonic() + 30
    while not admin_conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                 ).fetchone()[0]:
        assert time.monotonic() < deadline, "the second release never waited for the first"
        time.sleep(0.05)
    released = publish.release(first, NORTH, EXAM_DAY, gate.validation_id)  # ...and commits version 1
    first.execute("SELECT pg_advisory_unlock(gradeflow_lock_key(%s))", lock)
    second.join(timeout=60)
    assert released["new"] and released["version"] == 1
    assert waited and not waited["new"] and waited["release_id"] == released["release_id"]
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 1


def test_the_export_streams_row_groups_and_keeps_every_value(conn, admin_conn, s3, monkeypatch):
    """Tiny CSV blocks and row groups: many batches and row groups, the same rows and values as release_results,
    text with newlines, quotes and commas intact, an empty rationale kept apart from a missing one."""
    monkeypatch.setattr(publish, "EXPORT_ROW_GROUP", 5)
    monkeypatch.setattr(db, "ARROW_BATCH_BYTES", 512)
    _day(conn, s3, submissions=6)
    admin_conn.execute("UPDATE grades SET rationale = %s WHERE grade_id = (SELECT min(grade_id) FROM grades)",
                       ('line one\nline "two", with a comma',))
    admin_conn.execute("UPDATE grades SET rationale = '' WHERE grade_id = (SELECT max(grade_id) FROM grades)")
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    released = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    key = publish.export(conn, s3, NORTH, EXAM_DAY, released["release_id"])
    params = {"inst": NORTH.id, "release_id": released["release_id"]}
    for name, fetched in ((key, "publish/release_rows"),
                          (key.replace("results-", "submissions-"), "publish/submission_rows")):
        parquet = pq.ParquetFile(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=name)["Body"].read()))
        expected = sorted(db.fetch_all(conn, fetched, params),  # results: unordered in SQL, sorted by the export
                          key=lambda r: [r[c].encode() for c in ("exam_id", "submission_id", "question_id") if c in r])
        assert parquet.read().to_pylist() == expected
        assert parquet.metadata.num_rows == len(expected)
    results = pq.ParquetFile(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read()))
    assert results.metadata.num_row_groups > 1
    rationales = results.read(columns=["rationale"]).column(0).to_pylist()
    assert 'line one\nline "two", with a comma' in rationales and "" in rationales and None in rationales
    assert conn.execute("SELECT exported_at IS NOT NULL FROM releases").fetchone()[0]


def test_an_empty_release_exports_empty_files_with_their_schema(conn, admin_conn, s3):
    """No rows (a release whose results were all removed): valid Parquet files, zero rows, the full schema."""
    _day(conn, s3, submissions=1)
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    released = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    admin_conn.execute("DELETE FROM release_results")
    key = publish.export(conn, s3, NORTH, EXAM_DAY, released["release_id"])
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read()))
    assert table.num_rows == 0 and table.schema == publish._release_schema()


def test_arrow_reads_see_the_callers_snapshot_role_and_settings(day, conn, admin_conn, s3):
    """Issue 18: the gate and the export read through db.arrow_batches (ADBC, a second session): it must see
    exactly the caller's transaction (its REPEATABLE READ snapshot, not a change committed since), log in as the
    caller's role (what row-level security binds) and plan with the caller's bulk settings."""
    grade = conn.execute("SELECT min(grade_id) FROM grades WHERE score > 0").fetchone()[0]
    query = ("SELECT current_user::text AS login, current_setting('gradeflow.institution') AS bound, "
             "current_setting('enable_nestloop') AS nestloop, current_setting('transaction_isolation') AS isolation, "
             "(SELECT score::float8 FROM grades WHERE grade_id = %(grade)s) AS score, "
             "(SELECT count(DISTINCT institution_id) FROM answers)::int AS institutions")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        db.execute(conn, "bulk_plans")
        before = conn.execute("SELECT score::float8 FROM grades WHERE grade_id = %s", (grade,)).fetchone()[0]
        admin_conn.execute("UPDATE grades SET score = 0 WHERE grade_id = %s", (grade,))  # after the snapshot
        rows = [r for batch in db.arrow_batches(conn, query, {"inst": "northfield", "grade": grade})
                for r in batch.to_pylist()]
    assert rows == [{"login": conn.info.user, "bound": "northfield", "nestloop": "off", "isolation": "repeatable read",
                     "score": before, "institutions": 1}]
    assert conn.execute("SELECT score::float8 FROM grades WHERE grade_id = %s", (grade,)).fetchone()[0] == 0 < before
    with pytest.raises(db.TenantMismatch):
        next(db.arrow_batches(conn, "SELECT 1 AS one", {"inst": "lakeshore"}))
    with pytest.raises(RuntimeError, match="transaction"):
        next(db.arrow_batches(conn, "SELECT 1 AS one", {"inst": "northfield"}))


def test_the_gate_counts_the_waiting_states_from_the_rows_it_validates(conn, s3):
    """Issue 18: the gate evaluates answer_lifecycle once; the waiting states (deferred, pending the model,
    received) are counted from the rows it checks, and equal day_counts' counts in the same state."""
    _day(conn, s3, submissions=4)
    prepare.build_batches(Night(NORTH, EXAM_DAY, conn, s3))  # some answers queued for the model
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    counts = publish.day_counts(conn, NORTH, EXAM_DAY)
    assert gate.success and gate.counts == counts
    assert counts["pending_model"] + counts["received"] + counts["deferred"] > 0



DAY_TABLES = {"grades", "submissions", "review_queue", "review_items", "llm_requests"}


def _scans(plan: dict) -> list[tuple[str, int]]:
    """(table, rows returned over all loops) of every plan node over a day-keyed table (EXPLAIN ANALYZE)."""
    found = [(plan["Relation Name"], int(plan["Actual Rows"] * plan["Actual Loops"]))] \
        if plan.get("Relation Name") in DAY_TABLES else []
    return found + [scan for child in plan.get("Plans", []) for scan in _scans(child)]


def test_the_gate_and_the_release_read_only_their_days_rows(conn, s3):
    """Issue 18: the gate's rows (answer_lifecycle) and the release's statement join the day's grades and
    submissions only, not every day the institution ever had (they slowed as the history grew). Day 1 has 3
    submissions graded by rule, day 2 has 2: every scan of grades or submissions in day 2's statements returns
    day 2's rows at most."""
    _day(conn, s3, submissions=3)
    day2 = date.fromordinal(EXAM_DAY.toordinal() + 1)
    rows = [row | {"submitted_at": row["submitted_at"].replace(DAY, str(day2))}
            for n in range(2) for row in answers_for(f"t{n}", f"tt{n}")]
    put(s3, f"incoming/northfield/{day2}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{day2}/submissions/b.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, day2)
    prepare.grade_by_rule(conn, NORTH, day2)
    per_day = dict(conn.execute("SELECT exam_day, count(*) FROM grades GROUP BY 1").fetchall())
    assert per_day == {EXAM_DAY: 9, day2: 6}  # three rule questions per submission
    gate = publish.validate(conn, NORTH, day2)
    assert gate.success
    params = {"inst": NORTH.id, "day": day2}
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        db.execute(conn, "bulk_plans")
        release_id = db.fetch_all(conn, "publish/insert_release", {**params, "version": 1, "fingerprint": "x",
                                                                   "validation_id": gate.validation_id}
                                  )[0]["release_id"]
        statements = {"gate": publish._with_answer_rows("publish/answer_states"),
                      "release": publish._with_answer_rows("publish/insert_release_results")}
        for what, text in statements.items():
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text,
                                {**params, "version": 1, "release_id": release_id, "grading_version": 1}
                                ).fetchone()[0][0]["Plan"]
            scans = _scans(plan)
            day_rows = {"grades": 6, "submissions": 2, "review_queue": 0, "review_items": 0, "llm_requests": 0}
            assert all(rows <= day_rows[table] for table, rows in scans), (what, scans)
            assert ("grades", 6) in scans, (what, scans)  # the day's grades were read: the check is not vacuous


def test_a_new_version_leaves_the_released_one_as_it_was(day, conn, admin_conn, s3):
    """A release is immutable: after a regrade and version 2, version 1's rows are what they were, and each
    version's rows still sum to its own fingerprint (release_results.row_hash, issue 18)."""
    first = publish.release(conn, NORTH, EXAM_DAY, publish.validate(conn, NORTH, EXAM_DAY).validation_id)
    snapshot = "SELECT * FROM release_results WHERE release_id = %s ORDER BY submission_id, question_id"
    before = conn.execute(snapshot, (first["release_id"],)).fetchall()
    admin_conn.execute("UPDATE grades SET score = 0 WHERE grade_id = (SELECT min(grade_id) FROM grades "
                       "WHERE is_current AND score > 0)")
    second = publish.release(conn, NORTH, EXAM_DAY, publish.validate(conn, NORTH, EXAM_DAY).validation_id)
    assert (first["version"], second["version"]) == (1, 2) and second["new"]
    assert conn.execute(snapshot, (first["release_id"],)).fetchall() == before
    sums = conn.execute("SELECT r.version, r.fingerprint, 'v2:' || count(*) || ':' || sum(x.row_hash) FROM releases r "
                        "JOIN release_results x ON x.release_id = r.release_id GROUP BY 1, 2 ORDER BY 1").fetchall()
    assert [(v, fp == summed) for v, fp, summed in sums] == [(1, True), (2, True)]
    assert sums[0][1] != sums[1][1]


def test_the_release_reads_the_days_grades_and_reviews_once(day, conn, s3):
    """Issue 18 (030): the release statement reads the day's grades once (the view's join gives the current
    grade's columns and its count) and review_queue once, where it read grades three times (the view, the
    recount of publish/answer_rows, the grade's columns by grade_id) and review_queue twice. The gate keeps its
    independent recounts. Its rows still sum to the fingerprint the gate validated."""
    graded = conn.execute("SELECT count(*) FROM grades").fetchone()[0]
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    params = {"inst": NORTH.id, "day": EXAM_DAY}
    with conn.transaction(force_rollback=True):
        db.execute(conn, "bulk_plans")
        release_id = db.fetch_all(conn, "publish/insert_release", {**params, "version": 1, "fingerprint": "x",
                                                                   "validation_id": gate.validation_id}
                                  )[0]["release_id"]
        plans = {}
        for what, name in (("gate", "publish/answer_states"), ("release", "publish/insert_release_results")):
            plans[what] = _scans(conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + publish._with_answer_rows(name),
                                              {**params, "version": 1, "release_id": release_id,
                                               "grading_version": 1}).fetchone()[0][0]["Plan"])
        written = conn.execute("SELECT 'v2:' || count(*) || ':' || sum(row_hash) FROM release_results "
                               "WHERE release_id = %s", (release_id,)).fetchone()[0]
    reads = {what: [table for table, _ in scans] for what, scans in plans.items()}
    assert reads["release"].count("grades") == 1 and reads["release"].count("review_queue") == 1, reads
    assert reads["gate"].count("grades") == 2 and reads["gate"].count("review_queue") == 2, reads  # recounts kept
    assert ("grades", graded) in plans["release"]
    assert written == gate.fingerprint


# Submission ids whose byte order differs from a linguistic collation's (case, punctuation, spaces, accents).
AWKWARD_IDS = ("b-2", "B1", "a b", "ab", "a-b", "a_b", "Zoe", "zoe", "\u00e9t\u00e9", "eta", "a10", "a9")


def _released_awkward_day(conn, s3) -> dict:
    """A day of AWKWARD_IDS' submissions ingested, ordered, graded by rule, validated and released: the release."""
    rows = [row for n, sid in enumerate(AWKWARD_IDS) for row in answers_for(sid, f"st{n}")]
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, EXAM_DAY)
    prepare.grade_by_rule(conn, NORTH, EXAM_DAY)
    return publish.release(conn, NORTH, EXAM_DAY, publish.validate(conn, NORTH, EXAM_DAY).validation_id)


def test_the_export_sorts_the_results_in_arrow_in_byte_order(conn, admin_conn, s3, monkeypatch):
    """Issue 18: the results file's order (exam, submission, question) is made in Arrow, not by a PostgreSQL
    sort of the release's wide rows (its read has no sort), in byte order whatever the database's collation
    (as COLLATE "C"); the submissions file is in the same order. Every row and value is the release's."""
    monkeypatch.setattr(publish, "EXPORT_ROW_GROUP", 7)  # row groups cut the sorted table, not the query's batches
    released = _released_awkward_day(conn, s3)
    key = publish.export(conn, s3, NORTH, EXAM_DAY, released["release_id"])
    results = pq.ParquetFile(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read()))
    table = results.read()
    order = [(r["exam_id"], r["submission_id"], r["question_id"]) for r in table.to_pylist()]
    assert order == sorted(order, key=lambda k: [part.encode() for part in k])
    assert sorted({sid for _, sid, _ in order}) == sorted(AWKWARD_IDS) and len(order) == 4 * len(AWKWARD_IDS)
    assert results.metadata.num_row_groups == -(-len(order) // 7)
    released_rows = conn.execute(
        "SELECT submission_id, question_id, score::float8, status FROM release_results WHERE release_id = %s",
        (released["release_id"],)).fetchall()
    assert sorted((r["submission_id"], r["question_id"], r["score"], r["status"]) for r in table.to_pylist()) == \
        sorted(released_rows)
    submissions = pq.read_table(io.BytesIO(s3.get_object(
        Bucket="gradeflow", Key=key.replace("results-", "submissions-"))["Body"].read())).to_pylist()
    assert [s["submission_id"] for s in submissions] == list(dict.fromkeys(sid for _, sid, _ in order))
    with conn.transaction(force_rollback=True):
        db.execute(conn, "bulk_plans")
        for name in ("publish/release_rows", "publish/submission_rows"):
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + db.sql(name).strip().rstrip(";"),
                                {"inst": NORTH.id, "release_id": released["release_id"]}).fetchone()[0][0]["Plan"]
            sorts = [n for n in _nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]
            if name == "publish/release_rows":
                assert not sorts, sorts
            else:
                assert all(all('COLLATE "C"' in k for k in n["Sort Key"]) for n in sorts), sorts


def test_a_release_too_big_to_sort_in_arrow_is_sorted_by_postgresql(conn, admin_conn, s3, monkeypatch, caplog):
    """Above EXPORT_SORT_BYTES the export drops what it read and streams the rows PostgreSQL sorts (bounded memory):
    the same files, byte order too."""
    released = _released_awkward_day(conn, s3)
    monkeypatch.setattr(db, "ARROW_BATCH_BYTES", 512)  # several batches, so the limit is passed mid-read

    def exported() -> list[list[dict]]:
        key = publish.export(conn, s3, NORTH, EXAM_DAY, released["release_id"])
        return [pq.read_table(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=name)["Body"].read())).to_pylist()
                for name in (key, key.replace("results-", "submissions-"))]

    in_arrow = exported()
    assert "PostgreSQL sorts them instead" not in caplog.text
    monkeypatch.setattr(publish, "EXPORT_SORT_BYTES", 2048)
    in_postgresql = exported()
    assert in_postgresql == in_arrow and len(in_arrow[0]) == 4 * len(AWKWARD_IDS)
    order = [(r["exam_id"], r["submission_id"], r["question_id"]) for r in in_postgresql[0]]
    assert order == sorted(order, key=lambda k: [part.encode() for part in k])
    assert "PostgreSQL sorts them instead" in caplog.text
    copies = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND query LIKE 'COPY%%'"
    deadline = time.monotonic() + 10
    while conn.execute(copies).fetchone()[0] and time.monotonic() < deadline:  # a closed session ends at once
        time.sleep(0.1)
    assert conn.execute(copies).fetchone()[0] == 0  # the dropped read's session was closed


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]
