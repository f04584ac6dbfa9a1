"""PostgreSQL access: connections through Airflow's PostgresHook, SQL from include/sql/, migrations.

Every statement is a file under include/sql/ rendered with bind parameters (never string
formatting with data).

Isolation (docs/security.md): each institution's tasks log in as that institution's own role
(`gradeflow_worker_<id>`, connection `gradeflow_db_<id>`), and the row-level security policies
(migrations 003 and 016) compare each row's institution_id with the institution of the session's login
role, which no SQL the session runs can change. `connect(institution=...)` also sets the session
setting `gradeflow.institution` (informational), checks the login is the institution's, and the code
refuses a statement whose `inst` parameter names another institution (TenantMismatch).
Migrations run as the owner role, by an explicit step (`python -m gradeflow.core.db migrate`, run by
the embedded stack's `up`), never by a task.

Bounded waits: every connection carries statement, lock and idle-in-transaction timeouts, a
client-connection check (a backend whose client died mid-query ends within seconds instead of
holding its locks) and TCP keepalives both ways; its application_name names the institution and
the Airflow task. A lock wait that times out raises LockWaitTimeout naming the blocking backend.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from functools import cache
from typing import IO, Any

import psycopg
import psycopg.errors
from psycopg import sql as sql_mod

from gradeflow.core.config import POSTGRES_CONN_ID, POSTGRES_OWNER_CONN_ID, SQL_DIR, Institution, load_institutions

log = logging.getLogger(__name__)

MIGRATIONS_DIR = SQL_DIR / "migrations"
_MIGRATION_LOCK = 0x6772_6164  # "grad": first migrators of an empty database (later: a lock on schema_migrations)
TENANT_SETTING = "gradeflow.institution"
RELEASE_TABLES = ("releases", "release_results")  # what an institution's read-only role may read
# Releases whose exports are in place (security_invoker views over RELEASE_TABLES): what readers should query.
RELEASE_VIEWS = ("published_releases", "published_results")
# The only tables without institution_id: reference data the migrate step writes; the worker may only read them.
# provider_enqueued: the API organisation's enqueued-token reservations, shared by every institution on
# purpose (row-level security would hide the others' and let the cap be passed); the worker writes it
# only through gradeflow_reserve_enqueued / gradeflow_release_enqueued (004, re-created in 014 and 016), for itself.
# gradeflow_tenant_roles / gradeflow_org_limits (migration 016): login -> institution, and the organisation's
# caps; only the owner reads them, the night through definer functions that check the calling role.
# gradeflow_lock_generations (migration 019): the generation of each institution's advisory-lock keys, moved on
# by gradeflow_lock_key when another login holds the current key; owner-only.
GLOBAL_TABLES = frozenset({"schema_migrations", "review_reasons", "provider_enqueued", "gradeflow_tenant_roles",
                           "gradeflow_org_limits", "gradeflow_lock_generations"})

# Session settings of the night's connections: (setting, environment variable, default).
# Defaults: no statement of the night runs for minutes (set-based SQL and COPY; the 200k-row ingest
# benchmark's statements take seconds), so 5 min bounds a stuck one well before the task's
# execution_timeout; a lock is never legitimately held for long, so 30 s of waiting means something
# is stuck, and the error names it; a transaction idle for 5 min is a client that lost its way.
SESSION_SETTINGS = (
    ("statement_timeout", "GRADEFLOW_DB_STATEMENT_TIMEOUT", "5min"),
    ("lock_timeout", "GRADEFLOW_DB_LOCK_TIMEOUT", "30s"),
    ("idle_in_transaction_session_timeout", "GRADEFLOW_DB_IDLE_IN_TRANSACTION_TIMEOUT", "5min"),
    ("client_connection_check_interval", "GRADEFLOW_DB_CLIENT_CHECK_INTERVAL", "5s"),
    ("tcp_keepalives_idle", "GRADEFLOW_DB_KEEPALIVES_IDLE", "60"),
    ("tcp_keepalives_interval", "GRADEFLOW_DB_KEEPALIVES_INTERVAL", "10"),
    ("tcp_keepalives_count", "GRADEFLOW_DB_KEEPALIVES_COUNT", "6"),
)
MIGRATE_STATEMENT_TIMEOUT_ENV = "GRADEFLOW_DB_MIGRATE_STATEMENT_TIMEOUT"  # default 30min: DDL on big tables


def worker_role() -> str:
    """The group role that holds the night's table grants; each institution's login is a member of it."""
    return os.environ.get("GRADEFLOW_DB_WORKER_ROLE", "gradeflow_worker")


def tenant_login(institution_id: str) -> str:
    """The login role of one institution's tasks (created by migrate; rows are bound to it, migration 016)."""
    return f"{worker_role()}_{institution_id}"


def tenant_conn_id(institution_id: str) -> str:
    """The Airflow connection of one institution's tasks: gradeflow_db_<id>, logging in as tenant_login(id)."""
    return f"{POSTGRES_CONN_ID}_{institution_id}"


def reader_role(institution_id: str) -> str:
    """The read-only role of one institution's release tables."""
    return f"gradeflow_ro_{institution_id}"


class SchemaNotMigrated(RuntimeError):
    """The database is behind the code: the owner must run the migrate step first."""


class TenantMismatch(RuntimeError):
    """A connection bound to one institution was used for another."""


class LockWaitTimeout(psycopg.errors.LockNotAvailable):
    """A statement waited longer than lock_timeout; the message names the blocking backend(s)."""


_BOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> institution id


def session_settings() -> dict[str, str]:
    """The timeouts and keepalives of the night's connections, from the environment (see README)."""
    return {name: os.environ.get(env, default) for name, env, default in SESSION_SETTINGS}


def application_name(institution: str | None) -> str:
    """gradeflow/<institution>/<dag_id>.<task_id> (the Airflow task when there is one); 63 bytes at most."""
    parts = ["gradeflow", institution or "admin"]
    dag_id, task_id = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_TASK_ID")
    if task_id:
        parts.append(f"{dag_id}.{task_id}" if dag_id else task_id)
    else:
        parts.append(os.path.basename(sys.argv[0] or "python"))
    return "/".join(parts).encode()[:63].decode(errors="ignore")


def connect(conn_id: str = POSTGRES_CONN_ID, institution: str | None = None) -> psycopg.Connection:
    """An autocommit psycopg 3 connection from the Airflow connection `conn_id`, with bounded waits.

    With `institution` (and the default `conn_id`), the connection is the institution's own,
    `gradeflow_db_<id>`, logging in as `gradeflow_worker_<id>`: row-level security binds rows to that
    login role, so whatever SQL runs on it sees and writes only that institution's rows. The code also
    refuses to use it for another institution (TenantMismatch), and a connection whose login belongs to
    another institution is refused at once. Without `institution` only the owner connection,
    `gradeflow_db_owner`, is of use (migrations, admin views).
    """
    if institution and conn_id == POSTGRES_CONN_ID:
        conn_id = tenant_conn_id(institution)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    class _Hook(PostgresHook):
        def _create_connection(self, conn_args: dict[str, Any]):
            # Client-side keepalives (the server's are session settings) and a connect timeout: a vanished
            # server cannot hang a task. The Airflow connection's extras win over these defaults.
            keep = session_settings()
            defaults = {"application_name": application_name(institution), "connect_timeout": 10, "keepalives": 1,
                        **{f"keepalives_{k}": keep[f"tcp_keepalives_{k}"] for k in ("idle", "interval", "count")}}
            return super()._create_connection({**defaults, **conn_args})

    conn = _Hook(postgres_conn_id=conn_id).get_conn()
    # Autocommit: each `with conn.transaction()` block is then a real transaction (not a savepoint
    # inside an implicit one), so what the code commits is durable before it archives or submits.
    conn.autocommit = True
    conn.cursor_factory = _GuardedCursor
    settings = {**session_settings(), TENANT_SETTING: institution or ""}
    conn.execute("SELECT " + ", ".join("set_config(%s, %s, false)" for _ in settings),
                 [v for item in settings.items() for v in item])
    if institution:
        _check_login(conn, conn_id, institution)
        _BOUND[conn] = institution
    _WATCHED[conn] = (conn_id, _seconds(settings["lock_timeout"]))
    return conn


def sibling(conn: psycopg.Connection) -> psycopg.Connection | None:
    """A second connection made as `conn` was (connect(): the same Airflow connection, institution and session
    settings), for work that runs beside it in the same task; None for a connection connect() did not make."""
    if conn not in _WATCHED:
        return None
    return connect(_WATCHED[conn][0], institution=_BOUND.get(conn))


def _check_login(conn: psycopg.Connection, conn_id: str, institution: str) -> None:
    """The login must be the institution's own role (what the policies bind rows to), or fail now."""
    try:
        mine = conn.execute("SELECT gradeflow_role_institution()").fetchone()[0]
    except psycopg.errors.UndefinedFunction:
        try:
            require_schema(conn)  # names every missing migration
        finally:
            conn.close()
        raise SchemaNotMigrated("the database has no per-institution roles yet (migration 016): run "
                                "`python -m gradeflow.core.db migrate` as the owner") from None
    if mine != institution:
        login = conn.info.user
        conn.close()
        raise TenantMismatch(f"connection {conn_id!r} logs in as {login!r}, which is not the login of institution "
                             f"{institution!r} ({tenant_login(institution)!r}, created by the migrate step)")


def bound_institution(conn: psycopg.Connection) -> str | None:
    """The institution a connection from connect() is bound to (None: unbound or not ours)."""
    return _BOUND.get(conn)


def check_tenant(conn: psycopg.Connection, institution_id: str) -> None:
    """Refuse to work on `institution_id` through a connection bound to another institution."""
    bound = _BOUND.get(conn)
    if bound is not None and bound != institution_id:
        raise TenantMismatch(f"this database connection is bound to institution {bound!r} and cannot work on "
                             f"{institution_id!r}: open one connection per institution (db.connect(institution=...))")


def require_schema(conn: psycopg.Connection) -> None:
    """Fail with a clear message when the database is behind the code's migrations (tasks never migrate)."""
    wanted = [p.stem for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]
    try:
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
        applied = set()
    missing = [v for v in wanted if v not in applied]
    if missing:
        where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
        raise SchemaNotMigrated(
            f"GradeFlow's database {where} is not migrated: missing {', '.join(missing)}. Run the migrate step "
            f"as the owner role: `python -m gradeflow.core.db migrate` (connection {POSTGRES_OWNER_CONN_ID!r}); "
            "on the embedded stack `make stack-up` does it. Tasks work as the least-privilege role and never migrate."
        )


class InstitutionNotRegistered(RuntimeError):
    """An institution of include/institutions.yaml that the migrate step has not registered yet."""


def require_institution(conn: psycopg.Connection, institution_id: str) -> None:
    """Fail with what to do when the institution is in the file but not in the database (tasks cannot add it)."""
    if fetch_all(conn, "institution_registered", {"inst": institution_id})[0]["registered"]:
        return
    raise InstitutionNotRegistered(
        f"institution {institution_id!r} is in include/institutions.yaml but not registered in GradeFlow's "
        "database, so nothing of it can be stored. Run the migrate step once as the owner role: `python -m "
        f"gradeflow.core.db migrate` (connection {POSTGRES_OWNER_CONN_ID!r}; docker compose: `docker compose run "
        "--rm airflow-init`; the embedded stack: `make migrate`), then clear this task. "
        "See docs/add-an-institution.md, step 2.")


# --- Lock waits that name their blocker -------------------------------------------------------------
# While a statement runs, a watchdog thread of this process looks (from its own connection, only for
# statements that run longer than half the lock timeout) at pg_blocking_pids() of the statement's
# backend; when PostgreSQL cancels the wait (lock_timeout), the error carries what it saw.

_WATCHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> (conn id, lock timeout s)

BLOCKERS_SQL = """
SELECT pid, coalesce(nullif(application_name, ''), '?') AS application_name, usename, state,
       date_trunc('second', now() - coalesce(xact_start, query_start)) AS holding_for,
       query_start, left(query, 120) AS query
  FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(%s)) ORDER BY pid
"""


class _Watchdog:
    """One daemon thread per process; one diagnostic connection per connection id, opened on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, dict] = {}  # id(cursor) -> {pid, conn_id, since, after, blockers}
        self.thread: threading.Thread | None = None
        self.diag: dict[str, psycopg.Connection] = {}

    def start(self, key: int, pid: int, conn_id: str, after: float) -> None:
        with self.lock:
            self.running[key] = {"pid": pid, "conn_id": conn_id, "next": time.monotonic() + after,
                                 "every": max(0.25, after / 2), "blockers": None}
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="gradeflow-lock-watchdog", daemon=True)
                self.thread.start()

    def stop(self, key: int) -> list[dict] | None:
        with self.lock:
            entry = self.running.pop(key, None)
        return entry["blockers"] if entry else None

    def _loop(self) -> None:
        while True:
            time.sleep(0.1)
            with self.lock:
                due = [e for e in self.running.values() if time.monotonic() >= e["next"]]
            for entry in due:
                entry["next"] = time.monotonic() + entry["every"]
                try:
                    blockers = self._blockers(entry["conn_id"], entry["pid"])
                except Exception as exc:  # noqa: BLE001 - diagnosis must never break the statement it watches
                    log.debug("lock watchdog could not look at backend %s: %s", entry["pid"], exc)
                    continue
                if blockers or entry["blockers"] is None:
                    entry["blockers"] = blockers

    def _blockers(self, conn_id: str, pid: int) -> list[dict]:
        from psycopg.rows import dict_row

        diag = self.diag.get(conn_id)
        if diag is None or diag.closed:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            diag = self.diag[conn_id] = PostgresHook(postgres_conn_id=conn_id).get_conn()
            diag.autocommit = True
            diag.execute("SELECT set_config('statement_timeout', '5s', false), "
                         "set_config('application_name', 'gradeflow/lock-watchdog', false)")
        with diag.cursor(row_factory=dict_row) as cur:
            return cur.execute(BLOCKERS_SQL, (pid,)).fetchall()


_WATCHDOG = _Watchdog()


def describe_blockers(blockers: list[dict] | None) -> str:
    """One line per blocking backend: pid, application, state, how long, query start, query."""
    if blockers is None:
        return "a backend not seen (the wait ended before the watchdog's first look)"
    if not blockers:
        return "a backend that had already let go when the watchdog looked"
    return "; ".join(
        f"pid {b['pid']} (application_name {b['application_name']!r}, user {b['usename']}, state {b['state']!r}, "
        f"holding for {b['holding_for']}, query started {b['query_start']:%Y-%m-%d %H:%M:%S%z}, "
        f"last query {b['query']!r})"
        for b in blockers)


def _seconds(value: str) -> float:
    """A PostgreSQL duration ('30s', '500ms', '5min', '1h', bare = ms) in seconds."""
    value = value.strip()
    for unit, factor in (("ms", 0.001), ("min", 60.0), ("s", 1.0), ("h", 3600.0), ("d", 86400.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)].strip()) * factor
    return float(value) / 1000 if value else 0.0


class _GuardedCursor(psycopg.Cursor):
    """Runs each statement under the lock watchdog; a lock timeout becomes LockWaitTimeout naming the blocker."""

    def execute(self, query, params=None, **kwargs):
        conn_id, lock_timeout = _WATCHED.get(self.connection, (None, 0.0))
        if not conn_id or not lock_timeout:
            return super().execute(query, params, **kwargs)
        key, pid = id(self), self.connection.info.backend_pid
        _WATCHDOG.start(key, pid, conn_id, after=lock_timeout / 2)
        try:
            return super().execute(query, params, **kwargs)
        except psycopg.errors.LockNotAvailable as exc:
            if isinstance(exc, LockWaitTimeout):
                raise
            raise LockWaitTimeout(
                f"{exc.diag.message_primary or exc} after {lock_timeout:g}s (lock_timeout) in backend {pid} "
                f"({application_name(bound_institution(self.connection))}), blocked by "
                f"{describe_blockers(_WATCHDOG.stop(key))}") from exc
        finally:
            _WATCHDOG.stop(key)


@cache
def sql(name: str) -> str:
    """The text of include/sql/<name>.sql (cached; files are part of the release)."""
    path = (SQL_DIR / f"{name}.sql").resolve()
    if SQL_DIR.resolve() not in path.parents:
        raise ValueError(f"SQL name escapes include/sql: {name!r}")
    return path.read_text()


def _check_params(conn: psycopg.Connection, params: dict[str, Any] | None) -> dict[str, Any]:
    if params and "inst" in params and params["inst"] is not None:
        check_tenant(conn, params["inst"])
    return params or {}


def fetch_all(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None) -> list[dict]:
    """Run include/sql/<name>.sql with bind parameters and return the rows as dicts."""
    from psycopg.rows import dict_row

    params = _check_params(conn, params)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql(name), params)
        return cur.fetchall()


def stream_rows(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None,
                batch: int = 2_000) -> Iterator[dict]:
    """Run include/sql/<name>.sql with bind parameters through a server-side cursor (inside a transaction) and
    yield its rows as dicts, `batch` at a time: memory holds a batch, not the result."""
    from psycopg.rows import dict_row

    params = _check_params(conn, params)
    # Every row is read: plan for the whole result, not for the first tenth (a cursor's default fraction picks
    # fast-start nested loops, which turn quadratic on a new institution's first big day).
    conn.execute("SELECT set_config('cursor_tuple_fraction', '1', true)")
    with conn.cursor(name=f"gradeflow_{name.replace('/', '_')}", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(sql(name), params)
        yield from cur


def copy_out(conn: psycopg.Connection, name: str, params: dict[str, Any] | None, sink: IO[bytes]) -> None:
    """Run include/sql/<name>.sql, a `COPY (...) TO STDOUT` with bind parameters (merged by psycopg, COPY takes no
    server-side ones), and write what it sends to the binary file `sink` as it arrives: no Python object per row."""
    params = _check_params(conn, params)
    with conn.cursor() as cur, cur.copy(sql(name), params) as copy:
        for block in copy:
            sink.write(block)


def execute(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None) -> int:
    """Run include/sql/<name>.sql with bind parameters; return the affected row count."""
    params = _check_params(conn, params)
    with conn.cursor() as cur:
        cur.execute(sql(name), params)
        return cur.rowcount



# The settings an Arrow read runs with besides the login: the caller's session settings (timeouts, the tenant
# setting) and the transaction's plan settings (include/sql/bulk_plans.sql), copied from the caller's session.
ARROW_BATCH_BYTES = 16 << 20  # about this many bytes of rows per Arrow batch (the driver's hint)
_ARROW_SETTINGS = (*(name for name, _, _ in SESSION_SETTINGS[:4]), TENANT_SETTING, "enable_nestloop", "work_mem")


def arrow_batches(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None):
    """Stream ``query`` (with bind parameters) as Arrow record batches, in ``conn``'s current transaction snapshot.

    psycopg hands a COPY over one message per row to Python, which costs more than the query itself on a
    day's rows (issue 18); the ADBC PostgreSQL driver (libpq, C++) reads PostgreSQL's binary COPY straight
    into Arrow columns, in batches of bounded size. It opens a second session logging in as ``conn``'s own
    role (so row-level security binds it to the same institution), imports ``conn``'s transaction snapshot
    (``pg_export_snapshot``: it sees exactly what the caller's transaction sees, a REPEATABLE READ snapshot
    included), copies the caller's timeouts, tenant setting and plan settings, and runs read-only. The
    parameters are bound by psycopg (client-side, as psycopg does for COPY). Call it inside
    ``conn.transaction()`` and consume the batches before that block ends.
    """
    from adbc_driver_postgresql import dbapi as adbc

    params = _check_params(conn, params)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise RuntimeError("arrow_batches reads in the caller's transaction snapshot: call it in conn.transaction()")
    text = psycopg.ClientCursor(conn).mogrify(query, params)
    row = conn.execute("SELECT pg_export_snapshot(), " + ", ".join("current_setting(%s, true)" for _ in
                                                                    _ARROW_SETTINGS), _ARROW_SETTINGS).fetchone()
    snapshot, settings = row[0], dict(zip(_ARROW_SETTINGS, row[1:], strict=True))
    info = conn.info
    dsn = psycopg.conninfo.make_conninfo(host=info.host, port=info.port, dbname=info.dbname, user=info.user,
                                         password=info.password or None,
                                         application_name=application_name(bound_institution(conn)))
    reader = adbc.connect(dsn, autocommit=False)
    try:
        with reader.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(psycopg.ClientCursor(conn).mogrify("SET TRANSACTION SNAPSHOT %s", (snapshot,)))
            cur.execute(psycopg.ClientCursor(conn).mogrify(
                "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in settings),
                [v for item in settings.items() for v in (item[0], item[1] or "")]))
            cur.fetchall()
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(ARROW_BATCH_BYTES)})
            cur.execute(text)
            yield from cur.fetch_record_batch()
    finally:
        reader.rollback()
        reader.close()

def migrate(conn: psycopg.Connection, institutions: tuple[Institution, ...] | None = None,
            passwords: dict[str, str] | None = None) -> list[str]:
    """Apply the migrations not applied yet, in order, sync the tenants, then enforce isolation.

    Run as the owner role (tables' owner, CREATEROLE, no superuser needed), by the explicit migrate
    step, never by a task. An advisory lock serialises migrators; applied versions are recorded in
    schema_migrations. It ends, every time, by putting row-level security and the worker's grants
    on every table with an institution_id (including tables that later migrations add) and by
    creating each institution's login (gradeflow_worker_<id>, its password from `passwords` or from
    the institution's Airflow connection gradeflow_db_<id>, set again on every run) and read-only role.
    """
    applied_now: list[str] = []
    institutions = institutions if institutions is not None else load_institutions()
    worker = worker_role()
    with conn.transaction():
        # A migration waits briefly for the night's locks and then fails, rather than queue every task behind it.
        conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                      (session_settings()["lock_timeout"], os.environ.get(MIGRATE_STATEMENT_TIMEOUT_ENV, "30min")))
        if conn.execute("SELECT to_regclass('schema_migrations') IS NULL").fetchone()[0]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))  # first run: no table to lock yet
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (worker,)).fetchone():
            # The group role of the night's grants: created here, the owner then holds ADMIN on it (PG16).
            conn.execute(sql_mod.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(
                sql_mod.Identifier(worker)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # One migrator at a time: a lock no tenant login can take or block (it may only SELECT the table,
        # ACCESS SHARE, which SHARE ROW EXCLUSIVE does not conflict with), unlike an advisory key any session may hold.
        conn.execute("LOCK TABLE schema_migrations IN SHARE ROW EXCLUSIVE MODE")
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.stem in applied:
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            applied_now.append(path.stem)
        for inst in institutions:
            execute(
                conn,
                "upsert_institution",
                {"id": inst.id, "name": inst.name, "tz": inst.timezone, "prefix": inst.s3_prefix, "model": inst.model},
            )
        _sync_review_reasons(conn)
        _sync_tenant_logins(conn, institutions, worker, passwords)
        secured = conn.execute("SELECT gradeflow_enforce_isolation(%s)", (worker,)).fetchone()[0]
        for inst in institutions:
            conn.execute("SELECT gradeflow_grant_reader(%s, %s, %s)", (reader_role(inst.id), inst.id,
                                                                       list(RELEASE_TABLES)))
            for view in RELEASE_VIEWS:  # the tables' reader policies apply through them (security_invoker)
                conn.execute(sql_mod.SQL("GRANT SELECT ON {} TO {}").format(
                    sql_mod.Identifier(view), sql_mod.Identifier(reader_role(inst.id))))
    log.info("Migrated: %d migration(s) applied%s; row-level security on %d table(s); %d read-only role(s)",
             len(applied_now), f" ({', '.join(applied_now)})" if applied_now else "", secured, len(institutions))
    return applied_now


def _sync_tenant_logins(conn: psycopg.Connection, institutions: tuple[Institution, ...], worker: str,
                        passwords: dict[str, str] | None) -> None:
    """One login per institution, mapped to it, its password (re)set from its connection on every run.

    Setting the password on every run undoes a login that changed its own password (PostgreSQL lets
    any role do that, and no event trigger sees ALTER ROLE) at the next migrate step; before resetting it,
    a login that no longer accepts its connection's password is reported (a warning naming the login,
    and an audit line `login_password_reset`). The organisation's token caps go to gradeflow_org_limits.
    """
    from gradeflow.core.config import load_openai_settings

    for inst in institutions:
        login = tenant_login(inst.id)
        existed = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone() is not None
        conn.execute("SELECT gradeflow_tenant_login(%s, %s, %s)", (login, inst.id, worker))
        password = (passwords or {}).get(login) if passwords is not None else _connection_password(inst.id, login)
        if password and existed and _password_refused(conn, login, password):
            log.warning("ALERT login %s (institution %s) refused the password of its connection %s: a session "
                        "changed it (ALTER ROLE ... PASSWORD) or the secret was rotated; migrate sets it again now",
                        login, inst.id, tenant_conn_id(inst.id))
            audit(conn, "migrate", "login_password_reset", inst.id, details={"login": login})
        if password:
            conn.execute(sql_mod.SQL("ALTER ROLE {} PASSWORD {}").format(sql_mod.Identifier(login),
                                                                       sql_mod.Literal(password)))
        else:
            log.warning("No password for %s (connection %s not found): set it with ALTER ROLE %s PASSWORD ...",
                        login, tenant_conn_id(inst.id), login)
    settings = load_openai_settings()
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO gradeflow_org_limits (name, value) VALUES (%s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                        [("enqueued_token_cap", settings.enqueued_token_cap),
                         ("institution_token_cap", settings.institution_cap())])


def _password_refused(conn: psycopg.Connection, login: str, password: str) -> bool:
    """Whether the server refuses `login` with `password` (a login attempt over the migrate connection's address)."""
    try:
        psycopg.connect(host=conn.info.host, port=conn.info.port, dbname=conn.info.dbname, user=login,
                        password=password, connect_timeout=10,
                        application_name="gradeflow/migrate-password-check").close()
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return True
        log.debug("could not check the password of %s: %s", login, exc)
    return False


def _connection_password(institution_id: str, login: str) -> str | None:
    """The password of the institution's Airflow connection, when this process can read it."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        connection = PostgresHook.get_connection(tenant_conn_id(institution_id))
    except AirflowNotFoundException:
        return None
    if connection.login and connection.login != login:
        raise SchemaNotMigrated(f"connection {tenant_conn_id(institution_id)!r} logs in as {connection.login!r}; "
                                f"it must log in as {login!r}")
    return connection.password


def _sync_review_reasons(conn: psycopg.Connection) -> None:
    """Keep the review_reasons table equal to the closed set in gradeflow.core.states (the one source)."""
    from gradeflow.core.states import REVIEW_REASONS

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


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m gradeflow.core.db migrate` (as the owner connection) | `check` (as each institution)."""
    import argparse

    parser = argparse.ArgumentParser(description="GradeFlow's database: migrate (owner) or check (worker)")
    parser.add_argument("command", choices=["migrate", "check"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "migrate":
        with connect(POSTGRES_OWNER_CONN_ID) as conn:
            migrate(conn)
    else:
        for inst in load_institutions():
            try:
                conn = connect(institution=inst.id)
            except psycopg.OperationalError as exc:
                if "password authentication failed" not in str(exc):
                    raise
                log.error("ALERT login %s (institution %s) refuses the password of its connection %s: a session "
                          "changed it (ALTER ROLE ... PASSWORD) or the secret was rotated; run the migrate step",
                          tenant_login(inst.id), inst.id, tenant_conn_id(inst.id))
                return 1
            with conn:
                require_schema(conn)
        print("schema is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
