"""Fixtures on the real embedded stack: PostgreSQL (pgserver), S3 (moto server), the Batch API emulator.

The stack is started once per test session in a folder of its own (in /dev/shm, RAM, when it has room: see
_memory_folder), with the same code `make demo` uses. Under pytest-xdist (`make test`) each worker is its own
session, so each worker starts its own stack (its own folder, free ports, PostgreSQL cluster, bucket and
emulator) the first time one of its tests asks for it: workers never share a table. The unit tier
(tests/unit/conftest.py) starts nothing.

Every test that asks for a database fixture (admin_conn, tenant_conn, conn) gets its own database: GradeFlow's
database `gradeflow` is dropped and created again from `gradeflow_template`, a copy of it taken right after the
stack's migrate step (CREATE DATABASE ... TEMPLATE copies the migrated schema, row-level security, grants and
seed rows in a few milliseconds, where emptying every table and migrating again took ~0.4 s; the copy for the next
test is made in a background thread while this one runs, `gradeflow_next`, renamed when it is needed). The name stays
`gradeflow`, so every connection (gradeflow_db_<id> of each institution's login, the owner's, the superuser's)
reaches the test's own database without any setting changing. Roles are the cluster's, not the database's:
when a test changed one (a password, a role's grants), the next test's database is migrated again, which sets
them back. A module whose tests only read may share one such database for all its tests (module_database); a module
whose tests all start from one expensive state builds it once and each test starts on its own copy of it (SNAPSHOTS,
the `databases` fixture).
Every test also gets an emptied bucket (`s3`) and a reset emulator (`emulator`).

The test cluster runs with PostgreSQL's non-durable settings (devstack.stack.NONDURABLE_SETTINGS: no fsync) and
hashes passwords with 16 SCRAM iterations (THROWAWAY_SCRAM_ITERATIONS);
it is thrown away at the end of the session.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import pytest

from devstack import stack

# Compiled bytecode is kept between processes and runs. With PYTHONDONTWRITEBYTECODE set (as on the shared
# machine) and a venv installed without .pyc files (uv's default), every Python the suite starts (two workers,
# the stack's servers, each Airflow child) compiled every module it imported from source again: importing Airflow,
# pandas, pyarrow, openai and GradeFlow took 5.1-5.6 s of CPU a process, 1.9-2.0 s with the compiled files. The
# suite then writes them to .pycache/ at the project root (PYTHONPYCACHEPREFIX: nothing beside the sources or in
# the venv), for this process and every child; a PYTHONPYCACHEPREFIX given by the caller is kept.
PYCACHE = Path(__file__).resolve().parents[1] / ".pycache"
if sys.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE"):
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
    sys.dont_write_bytecode = False

# Airflow reads its plugins folder once, at import: the project's, so DAGs with GradeFlow's registered timetable
# serialize in tests as they do under the scheduler (plugins/gradeflow_plugin.py).
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(Path(__file__).resolve().parents[1] / "plugins"))
# Every stack the tests start (here, and the one the docker-init test starts) is a throwaway cluster: PostgreSQL
# without fsync (devstack/stack.py, NONDURABLE_SETTINGS).
os.environ.setdefault(stack.NONDURABLE_ENV, "1")

TEMPLATE_DB = "gradeflow_template"  # the migrated, empty database every test's `gradeflow` is copied from


@pytest.fixture(scope="session")
def embedded_stack():
    """Start the embedded stack for the session and export its connections as AIRFLOW_CONN_* variables.

    Its folder is outside pytest's basetemp: pytest keeps only the 3 newest `pytest-N` folders of a user,
    so another session starting meanwhile would delete a running PostgreSQL's data under it.
    """
    import shutil
    import tempfile

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # gw0, gw1, ... under pytest-xdist
    state_dir = Path(tempfile.mkdtemp(prefix=f"gradeflow-devstack-{worker}-", dir=_memory_folder()))
    info = stack.up(state_dir, emulator_timing_scale=0.02)
    saved = dict(os.environ)
    os.environ.update(stack.env(info))
    os.environ["GRADEFLOW_BATCH_POLL_SECONDS"] = "0.2"
    with stack.connect_as(info, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        _copy_database(su, stack.GRADEFLOW_DB, TEMPLATE_DB)
        _DATABASE_ACL[:] = su.execute(DATABASE_ACL, (stack.GRADEFLOW_DB,)).fetchall()
        _ROLES[0] = su.execute(ROLES_FINGERPRINT).fetchone()[0]
    _SPARE.start(info)
    yield info
    _SPARE.wait()
    if _SU[0] is not None:
        _SU[0].close()
    os.environ.clear()
    os.environ.update(saved)
    stack.down(state_dir, discard=True)
    shutil.rmtree(state_dir, ignore_errors=True)


# The stack's folder (PostgreSQL's data, the mail sink's and Airflow's files) goes to /dev/shm, a RAM file system,
# when there is one with room to spare: every test's CREATE DATABASE ... FILE_COPY copies the template's files and
# runs two checkpoints, and on a disk those waited 150 ms to 1 s each once other processes wrote to it (35-50 ms
# in RAM, measured side by side on the shared 2-core machine). GRADEFLOW_TEST_STACK_DIR names another parent folder;
# without /dev/shm (or with less room than MEMORY_FOLDER_MIN_FREE, e.g. Docker's default 64 MB) the system's
# temporary folder is used, as before.
MEMORY_FOLDER_MIN_FREE = 2 << 30


def _memory_folder() -> str | None:
    import shutil

    chosen = os.environ.get("GRADEFLOW_TEST_STACK_DIR")
    if chosen:
        return chosen
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= MEMORY_FOLDER_MIN_FREE:
            return str(shm)
    except OSError:
        pass
    return None


# The database's own grants (CONNECT for the night's logins and readers, none for PUBLIC) live in the cluster's
# catalog, not in the database, so a copy does not inherit them: they are read once and granted again.
DATABASE_ACL = """
SELECT CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(acl.grantee)) END, acl.privilege_type
  FROM pg_database d, aclexplode(d.datacl) acl WHERE d.datname = %s"""
# Everything about the cluster's roles a test could change: attributes, passwords, memberships.
ROLES_FINGERPRINT = """
SELECT md5((SELECT array_agg(a ORDER BY a.rolname)::text FROM pg_authid a)
           || (SELECT coalesce(array_agg(m ORDER BY m.roleid, m.member)::text, '') FROM pg_auth_members m))"""
_DATABASE_ACL: list[tuple[str, str]] = []
_ROLES: list[str] = [""]


def _copy_database(su, source: str, target: str) -> None:
    """DROP `target` (closing its connections) and CREATE it as a copy of `source`, with `source`'s grants."""
    from psycopg import sql

    _drop_database(su, target)
    # FILE_COPY: the copy is a file copy plus a checkpoint, which costs nothing without fsync (the default,
    # WAL_LOG, writes every page of the ~9 MB database into the WAL).
    su.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
        sql.Identifier(target), sql.Identifier(source), sql.Identifier(stack.OWNER_ROLE)))
    su.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(target)))


def _drop_database(su, name: str) -> None:
    """DROP database `name` if it exists, closing its connections."""
    from psycopg import sql

    su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_database(embedded_stack, request):
    """This test's own GradeFlow database: `gradeflow`, created again from the migrated template (see the top), or,
    when the test asks for a fixture its module names in SNAPSHOTS ({fixture: module-scoped fixture giving a snapshot,
    see `databases`}), from that snapshot."""
    for wanted, snapshot in getattr(request.module, "SNAPSHOTS", {}).items():
        if wanted in request.fixturenames:
            return _new_database(embedded_stack, request.getfixturevalue(snapshot))
    return _new_database(embedded_stack)


@pytest.fixture(scope="module")
def module_database(embedded_stack):
    """One GradeFlow database for a whole module whose tests only read (each in a transaction it rolls back, as
    test_rule_parity's 70 cases of a pure SQL function do): created from the template like fresh_database, once."""
    return _new_database(embedded_stack)


def _new_database(embedded_stack, template: str = TEMPLATE_DB) -> str:
    """`gradeflow` as a new copy of `template`: the migrated, empty template, or a module's snapshot (below)."""
    from psycopg import sql

    su = _superuser(embedded_stack)
    if template != TEMPLATE_DB:  # a module's snapshot: copied here; the spare (a copy of the template) waits
        _copy_database(su, template, stack.GRADEFLOW_DB)
    elif _SPARE.wait():  # the copy made while the previous test ran: DROP the used database, RENAME the copy
        _drop_database(su, stack.GRADEFLOW_DB)
        su.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(SPARE_DB), sql.Identifier(stack.GRADEFLOW_DB)))
    else:
        _copy_database(su, TEMPLATE_DB, stack.GRADEFLOW_DB)
    existing = {row[0] for row in su.execute("SELECT quote_ident(rolname) FROM pg_roles")} | {"PUBLIC"}
    for grantee, privilege in _DATABASE_ACL:
        if grantee in existing:  # a role a test dropped is created again by the migrate step below
            su.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                sql.SQL(privilege), sql.Identifier(stack.GRADEFLOW_DB), sql.SQL(grantee)))
    if su.execute(ROLES_FINGERPRINT).fetchone()[0] != _ROLES[0]:
        stack.migrate(embedded_stack)  # sets the institutions' logins, grants and passwords back
        _ROLES[0] = su.execute(ROLES_FINGERPRINT).fetchone()[0]
    if _SPARE.thread is None:  # none copied or being copied for the next test
        _SPARE.start(embedded_stack)
    return stack.GRADEFLOW_DB


@pytest.fixture(scope="session")
def databases(embedded_stack):
    """For a module whose tests all start from the same expensive state (test_isolation's two nights): the module
    builds that state once and keeps it as a snapshot, and each test starts on its own copy of it, so no test sees
    another's changes. `new(template)` makes `gradeflow` a new copy (of the empty template by default),
    `snapshot(name)` keeps `gradeflow` as it is now as the template `gradeflow_snapshot_<name>`, `drop(snapshot)`."""
    return _Databases(embedded_stack)


class _Databases:
    PREFIX = "gradeflow_snapshot_"

    def __init__(self, info) -> None:
        self.info = info

    def new(self, template: str = TEMPLATE_DB) -> str:
        return _new_database(self.info, template)

    def snapshot(self, name: str) -> str:
        su = _superuser(self.info)  # a template must have no connections: the test's are closed first
        su.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                   " AND pid <> pg_backend_pid()", (stack.GRADEFLOW_DB,))
        snapshot = self.PREFIX + name
        _copy_database(su, stack.GRADEFLOW_DB, snapshot)  # its grants are set again on each copy of it
        return snapshot

    def drop(self, snapshot: str) -> None:
        _drop_database(_superuser(self.info), snapshot)


_SU: list = [None]


def _superuser(info):
    """The worker's superuser session on the maintenance database `postgres`, for _new_database: one login per
    worker rather than one per database test."""
    if _SU[0] is None or _SU[0].closed or _SU[0].broken:
        _SU[0] = stack.connect_as(info, stack.PG_USER, dbname="postgres", autocommit=True)
    return _SU[0]


# The next test's database is copied from the template while this test runs: CREATE DATABASE ... FILE_COPY is
# ~20 ms of PostgreSQL's CPU but 40-80 ms of waiting (its checkpoints) on the test's path; a RENAME is ~1 ms.
SPARE_DB = "gradeflow_next"


class _SpareDatabase:
    """One background thread per worker that copies the template to SPARE_DB (its own connection; nothing else
    connects to SPARE_DB or the template). wait() joins it: True when the copy is there to be renamed."""

    def __init__(self) -> None:
        self.thread = None
        self.ok = False

    def start(self, info) -> None:
        import threading

        self.ok = False
        self.thread = threading.Thread(target=self._copy, args=(info,), name="spare-database", daemon=True)
        self.thread.start()

    def _copy(self, info) -> None:
        try:
            with stack.connect_as(info, stack.PG_USER, dbname="postgres", autocommit=True) as su:
                _copy_database(su, TEMPLATE_DB, SPARE_DB)
            self.ok = True
        except Exception:  # noqa: BLE001 - the next test then copies the template itself, as before
            self.ok = False

    def wait(self) -> bool:
        if self.thread is None:
            return False
        self.thread.join()
        self.thread = None
        return self.ok


_SPARE = _SpareDatabase()


@pytest.fixture(scope="session")
def _s3_client(embedded_stack):
    """One boto3 client on the embedded S3 for the session (building one costs ~20 ms of CPU; s3 empties the bucket
    for each test)."""
    import boto3

    return boto3.client("s3", **stack.s3_client_kwargs(embedded_stack))


@pytest.fixture
def s3(_s3_client):
    """A boto3 client on the embedded S3, with an empty bucket."""
    stack.empty_bucket(_s3_client)
    return _s3_client


@pytest.fixture
def admin_conn(embedded_stack, fresh_database):
    """The owner role's connection (sees every institution) to the test's own database: for setup and
    cross-institution assertions only."""
    connection = stack.connect_as(embedded_stack, stack.OWNER_ROLE, autocommit=True)
    yield connection
    connection.close()


@pytest.fixture
def tenant_conn(embedded_stack, admin_conn):
    """Open worker connections bound to one institution each, as the night's tasks do: tenant_conn("lakeshore")."""
    from gradeflow.core import db

    opened = []

    def open_for(institution_id: str):
        opened.append(db.connect(institution=institution_id))
        return opened[-1]

    yield open_for
    for connection in opened:
        connection.close()


@pytest.fixture
def conn(admin_conn, tenant_conn):
    """The night's connection for northfield (worker role, bound to it), on the test's own migrated database
    (fresh_database). Work on another institution goes through tenant_conn(<id>), as in the tasks."""
    return tenant_conn("northfield")


@pytest.fixture(scope="session")
def _emulator_http(embedded_stack):
    """One HTTP client on the emulator's control endpoint for the session: `httpx.post` builds a client (and its
    TLS context, ~25 ms of CPU) per call."""
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{embedded_stack.openai_port}", timeout=10) as http:
        yield http


@pytest.fixture
def emulator(embedded_stack, _emulator_http):
    """The Batch API emulator's control endpoint, reset; returns a helper to set faults."""
    http = _emulator_http
    http.post("/_emulator/reset").raise_for_status()

    class Control:
        url = f"http://127.0.0.1:{embedded_stack.openai_port}"

        @staticmethod
        def faults(**knobs):
            http.post("/_emulator/faults", json=knobs).raise_for_status()

        @staticmethod
        def stats() -> dict:
            return http.get("/_emulator/stats").json()

    return Control


@pytest.fixture
def openai_client(embedded_stack):
    """The official SDK client pointed at the emulator, built the way the pipeline builds it."""
    from gradeflow.grading.providers.openai_batch import client as build

    return build()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


# --- Scheduling under pytest-xdist ---------------------------------------------------------------------------
# `make test` runs `--dist loadfile`: a module is one unit of work, so its module-scoped fixtures (the e2e day
# through Airflow, the trigger-API child) run once. xdist hands out modules with the most tests first, which
# would leave the slowest modules (one or three tests, each tens of seconds) for the end, one worker busy with
# them while the other idles. A module that declares `pytestmark = pytest.mark.heavy(seconds=N)` (N: about
# how long it takes on a quiet 2-core machine) is handed out before all others, the longest first.
# A module that declares `pytest.mark.runs_with("<other module's path>")` is part of that module's unit: both go
# to the same worker, so a session fixture they share (tests/e2e/conftest.py: one Airflow child for two modules)
# runs once.
HEAVY = re.compile(r"pytest\.mark\.heavy\(seconds=(\d+)\)")
RUNS_WITH = re.compile(r"pytest\.mark\.runs_with\(\"([^\"]+)\"\)")


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy(seconds): a module that takes about this long on a quiet 2-core "
                                       "machine; make test starts it first (tests/conftest.py)")
    config.addinivalue_line("markers", "runs_with(path): make test runs this module on the worker of the module at "
                                       "path, as one unit (tests/conftest.py)")


def pytest_collection_finish(session):
    """Freeze the heap collection leaves behind (Airflow, pandas, pyarrow, openai, GradeFlow: about a million objects
    alive until the worker ends) so that Python's full garbage collections during the tests walk only what the tests
    allocate (e2e7 measured the full collections of an Airflow child at ~9 s of its ~29 s of CPU). What the tests
    create is collected as before."""
    import gc

    gc.collect()
    gc.freeze()


@pytest.hookimpl(optionalhook=True)  # without xdist (`-p no:xdist`) the hook does not exist
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class HeavyFirst(LoadFileScheduling):
        ordered = False

        def _split_scope(self, nodeid):
            scope = super()._split_scope(nodeid)
            return _runs_with(config.rootpath, scope) or scope

        def _assign_work_unit(self, node):
            if not self.ordered:  # once, when the work queue is complete
                self.ordered = True
                heavy = sorted((_declared_seconds(config.rootpath / scope), scope) for scope in self.workqueue)
                for seconds, scope in heavy:  # each to the front: the longest ends up first
                    if seconds:
                        self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return HeavyFirst(config, log)


@functools.cache
def _runs_with(root: Path, scope: str) -> str | None:
    try:
        found = RUNS_WITH.search((root / scope).read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def _declared_seconds(path: Path) -> int:
    try:
        found = HEAVY.search(path.read_text())
    except OSError:
        return 0
    return int(found.group(1)) if found else 0
