"""PostgreSQL access: connections through Airflow's PostgresHook, SQL from include/sql/, migrations.

Every statement is a file under include/sql/ rendered with bind parameters (never string
formatting with data). Connections carry a statement timeout so one stuck query cannot hold a
worker for the night.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from gradeflow.config import POSTGRES_CONN_ID, SQL_DIR, Institution, load_institutions

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = SQL_DIR / "migrations"
STATEMENT_TIMEOUT = "15min"
_MIGRATION_LOCK = 0x6772_6164  # "grad": one migrator at a time across workers


def connect(conn_id: str = POSTGRES_CONN_ID) -> psycopg.Connection:
    """An autocommit psycopg 3 connection to GradeFlow's database, from the Airflow connection `conn_id`."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    # Autocommit: each `with conn.transaction()` block is then a real transaction (not a savepoint
    # inside an implicit one), so what the code commits is durable before it archives or submits.
    conn.autocommit = True
    conn.execute("SELECT set_config('statement_timeout', %s, false)", (STATEMENT_TIMEOUT,))
    return conn


@cache
def sql(name: str) -> str:
    """The text of include/sql/<name>.sql (cached; files are part of the release)."""
    path = (SQL_DIR / f"{name}.sql").resolve()
    if SQL_DIR.resolve() not in path.parents:
        raise ValueError(f"SQL name escapes include/sql: {name!r}")
    return path.read_text()


def fetch_all(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None) -> list[dict]:
    """Run include/sql/<name>.sql with bind parameters and return the rows as dicts."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchall()


def execute(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None) -> int:
    """Run include/sql/<name>.sql with bind parameters; return the affected row count."""
    with conn.cursor() as cur:
        cur.execute(sql(name), params or {})
        return cur.rowcount


def migrate(conn: psycopg.Connection, institutions: tuple[Institution, ...] | None = None) -> list[str]:
    """Apply the migrations not applied yet, in order, then sync the tenants table.

    Safe to run from every task and from several workers at once: an advisory lock serialises
    migrators and applied versions are recorded in schema_migrations.
    """
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.stem in applied:
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            applied_now.append(path.stem)
        for inst in institutions if institutions is not None else load_institutions():
            execute(
                conn,
                "upsert_institution",
                {"id": inst.id, "name": inst.name, "tz": inst.timezone, "prefix": inst.s3_prefix, "model": inst.model},
            )
        _sync_review_reasons(conn)
    if applied_now:
        log.info("Applied %d migration(s): %s", len(applied_now), ", ".join(applied_now))
    return applied_now


def _sync_review_reasons(conn: psycopg.Connection) -> None:
    """Keep the review_reasons table equal to the closed set in gradeflow.lifecycle (the one source)."""
    from gradeflow.lifecycle import REVIEW_REASONS

    with conn.cursor() as cur:
        cur.executemany(sql("upsert_review_reason"),
                        [{"code": code, "description": text} for code, text in REVIEW_REASONS.items()])


def audit(conn: psycopg.Connection, actor: str, action: str, institution_id: str | None,
          exam_day: Any = None, details: dict | None = None) -> None:
    """Append one line to the audit log (within the caller's transaction)."""
    from psycopg.types.json import Jsonb

    execute(
        conn,
        "insert_audit",
        {"actor": actor, "action": action, "inst": institution_id, "day": exam_day, "details": Jsonb(details or {})},
    )
