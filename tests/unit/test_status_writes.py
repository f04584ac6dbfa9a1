"""Every status is written by gradeflow.lifecycle only (docs/answer-lifecycle.md, "The state machines").

No services: the SQL files and the package's sources are read as text. A status write is an UPDATE of a
status table with `status =` in its SET list, or an INSERT INTO a status table (a birth: the column's
default is its first state). Such a statement must live in include/sql/lifecycle/ and be run only from
plugins/gradeflow/lifecycle/; the CHECKs of the status columns hold the states of gradeflow.core.states.
"""

from __future__ import annotations

import re
from pathlib import Path

from gradeflow.core import states

ROOT = Path(__file__).resolve().parents[2]
STATUS_TABLES = ("llm_requests", "batch_jobs", "review_items")
_TABLES = "|".join(STATUS_TABLES)
_UPDATE = re.compile(rf"\bUPDATE\s+(?:ONLY\s+)?({_TABLES})\b(?:\s+(?:AS\s+)?\w+)?\s+SET\b(.*?)"
                     r"(?=\bWHERE\b|\bFROM\b|\bRETURNING\b|;|\)\s*(?:,|SELECT|UPDATE|INSERT)|$)", re.I | re.S)
_INSERT = re.compile(rf"\bINSERT\s+INTO\s+({_TABLES})\b", re.I)
_SET_STATUS = re.compile(r"(?:^|,)\s*status\s*=", re.I)
_SQL_NAME = re.compile(r"""["']((?:[a-z_]+/)*[a-z0-9_]+)["']""")


def _without_comments(text: str) -> str:
    return re.sub(r"--[^\n]*", "", text)


def status_writes(text: str) -> list[str]:
    """The status tables that a piece of SQL (or of source holding SQL) writes a status of."""
    text = _without_comments(text)
    found = [m.group(1) for m in _UPDATE.finditer(text) if _SET_STATUS.search(m.group(2))]
    return found + [m.group(1) for m in _INSERT.finditer(text)]


def violations(root: Path) -> list[str]:
    """Every status write outside gradeflow.lifecycle under `root` (a checkout of the project)."""
    found: list[str] = []
    sql_dir = root / "include" / "sql"
    lifecycle_sql = sql_dir / "lifecycle"
    pkg = root / "plugins" / "gradeflow"
    writers = set()  # include/sql names whose statements write a status
    for path in sorted(sql_dir.rglob("*.sql")):
        if "migrations" in path.relative_to(sql_dir).parts:
            continue
        tables = status_writes(path.read_text())
        if not tables:
            continue
        name = path.relative_to(sql_dir).with_suffix("").as_posix()
        writers.add(name)
        if lifecycle_sql not in path.parents:
            found.append(f"{path.relative_to(root)}: writes the status of {', '.join(sorted(set(tables)))} "
                         "outside include/sql/lifecycle/")
    sources = sorted(pkg.rglob("*.py")) + sorted((root / "dags").rglob("*.py"))
    for path in sources:
        if pkg / "lifecycle" in path.parents:
            continue
        text = path.read_text()
        tables = status_writes(text)
        if tables:
            found.append(f"{path.relative_to(root)}: writes the status of {', '.join(sorted(set(tables)))} "
                         "in inline SQL, outside gradeflow.lifecycle")
        for line_no, line in enumerate(text.splitlines(), 1):
            for name in _SQL_NAME.findall(line):
                if name in writers:
                    found.append(f"{path.relative_to(root)}:{line_no}: runs {name}.sql (a status write) "
                                 "outside gradeflow.lifecycle")
    return found


def test_every_status_write_is_in_lifecycle():
    assert violations(ROOT) == []


def test_the_scan_finds_planted_writes(tmp_path):
    """The check can fail: a status write planted in grading SQL, in inline SQL and a lifecycle statement run
    from elsewhere are each reported."""
    (tmp_path / "include" / "sql" / "grade").mkdir(parents=True)
    (tmp_path / "include" / "sql" / "lifecycle").mkdir(parents=True)
    (tmp_path / "include" / "sql" / "migrations").mkdir(parents=True)
    (tmp_path / "plugins" / "gradeflow" / "grading").mkdir(parents=True)
    (tmp_path / "plugins" / "gradeflow" / "lifecycle").mkdir(parents=True)
    (tmp_path / "dags").mkdir()
    (tmp_path / "include" / "sql" / "grade" / "sneaky.sql").write_text(
        "-- looks harmless\nUPDATE batch_jobs j\n   SET output_file_id = NULL, status = 'completed'\n"
        " WHERE job_id = 1;\n")
    (tmp_path / "include" / "sql" / "grade" / "harmless.sql").write_text(
        "UPDATE batch_jobs SET collected_at = now() WHERE status = 'completed';\n")
    (tmp_path / "include" / "sql" / "migrations" / "001.sql").write_text("UPDATE llm_requests SET status = 'x';\n")
    (tmp_path / "include" / "sql" / "lifecycle" / "queue.sql").write_text(
        "UPDATE llm_requests SET job_id = 1, status = 'queued' WHERE status = 'pending';\n")
    (tmp_path / "plugins" / "gradeflow" / "lifecycle" / "machine.py").write_text(
        'db.execute(conn, "lifecycle/queue")\nconn.execute("INSERT INTO review_items (x) VALUES (1)")\n')
    (tmp_path / "plugins" / "gradeflow" / "grading" / "night.py").write_text(
        'db.execute(conn, "lifecycle/queue", {})\ndb.execute(conn, "grade/harmless")\n'
        'conn.execute("INSERT INTO review_items (institution_id) VALUES (%s)", (x,))\n')
    found = violations(tmp_path)
    assert len(found) == 3, found
    assert "include/sql/grade/sneaky.sql" in found[0] and "batch_jobs" in found[0]
    assert "night.py" in found[1] and "review_items" in found[1] and "inline" in found[1]
    assert "night.py:1: runs lifecycle/queue.sql" in found[2]


def test_the_scan_reads_set_lists_only():
    assert status_writes("UPDATE llm_requests r SET status = 'review', error = 'x' WHERE r.status = 'graded'") \
        == ["llm_requests"]
    assert status_writes("UPDATE llm_requests SET error = NULL WHERE status = 'queued'") == []
    assert status_writes("UPDATE review_items SET status_note = 'x'") == []
    assert status_writes("WITH j AS (UPDATE batch_jobs SET status = 'superseded' WHERE x RETURNING job_id) "
                         "UPDATE llm_requests SET status = 'superseded'") == ["batch_jobs", "llm_requests"]
    assert status_writes("INSERT INTO llm_requests (custom_id) SELECT 1") == ["llm_requests"]
    assert status_writes("INSERT INTO grades (x) SELECT 1 FROM llm_requests") == []


def _checked_states() -> dict[str, set[str]]:
    """The states each status table's CHECK allows, as the migrations leave it (the last definition wins)."""
    checks: dict[str, set[str]] = {}
    inline = re.compile(r"CREATE TABLE (\w+) \((.*?)\n\);", re.S)
    added = re.compile(r"ALTER TABLE (\w+) ADD CONSTRAINT \w+_status_check\s+CHECK \(status IN \((.*?)\)\)", re.S)
    for path in sorted((ROOT / "include" / "sql" / "migrations").glob("*.sql")):
        text = _without_comments(path.read_text())
        for table, body in inline.findall(text):
            m = re.search(r"\bstatus\b[^,]*CHECK \(status IN \((.*?)\)\)", body, re.S)
            if m:
                checks[table] = set(re.findall(r"'(\w+)'", m.group(1)))
        for table, values in added.findall(text):
            checks[table] = set(re.findall(r"'(\w+)'", values))
    return checks


def test_each_status_column_checks_its_machines_states():
    checks = _checked_states()
    assert checks["llm_requests"] == set(states.REQUEST_STATES)
    assert checks["batch_jobs"] == set(states.JOB_STATES)
    assert checks["review_items"] == set(states.REVIEW_ITEM_STATES)


def test_transition_tables_name_only_their_states():
    for names, table in ((states.REQUEST_STATES, states.REQUEST_TRANSITIONS),
                         (states.JOB_STATES, states.JOB_TRANSITIONS),
                         (states.REVIEW_ITEM_STATES, states.REVIEW_ITEM_TRANSITIONS)):
        assert set(table) == {None, *names}
        assert set().union(*table.values()) <= set(names)
    # the API's statuses move forward only: polling may skip some, never go back to validating
    assert not any(states.may_move(states.JOB_TRANSITIONS, s, "validating")
                   for s in states.JOB_STATES if s not in ("validating", "prepared"))
    assert states.sources(states.JOB_TRANSITIONS, "in_progress") == ["in_progress", "prepared", "validating"]
