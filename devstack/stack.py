"""The embedded stack: PostgreSQL (pgserver), S3 (moto server), the Batch API emulator and a mail sink.

One call starts all four on localhost and records them in `<state dir>/stack.json`; one call
stops them. `env()` gives the environment (Airflow connections as AIRFLOW_CONN_* variables and
Airflow's own settings) that the demo, the tests and `make airflow` use, so the DAGs run against
the embedded stack exactly as they would against real services.

PostgreSQL's roles are those of production (docs/security.md): the superuser `postgres` only
bootstraps roles and databases; `gradeflow_owner` owns GradeFlow's tables and runs the migrate step
(every `up`); the night works as `gradeflow_worker` (no superuser, no owner, no BYPASSRLS, no DDL);
Airflow's metadata belongs to `airflow`. TCP logins need a password (scram-sha-256): random ones
are generated per state folder into `<state dir>/secrets.json` (mode 0600) and handed out only
through `env()` / `connect_as()`.

    python -m devstack.stack up      # start (or reuse) the stack in .devstack/
    python -m devstack.stack env     # print `export` lines for a shell
    python -m devstack.stack down    # stop it
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = PROJECT_ROOT / ".devstack"
PG_USER = "postgres"  # bootstrap superuser: creates roles and databases, nothing else
OWNER_ROLE = "gradeflow_owner"  # owns GradeFlow's schema, runs migrations
WORKER_ROLE = "gradeflow_worker"  # the night's group role (grants); each institution logs in as WORKER_ROLE_<id>
AIRFLOW_ROLE = "airflow"  # owns Airflow's metadata database
GRADEFLOW_DB = "gradeflow"
AIRFLOW_DB = "airflow"
# `make demo` keeps its own Airflow metadata (database and home): its dag.test() runs of a past day and its
# reviews Asset events must not reach `make airflow`'s scheduler (past slots and publish runs at start).
AIRFLOW_DEMO_DB = "airflow_demo"
BUCKET = "gradeflow"
EMULATOR_KEY = "sk-emulator-not-a-secret"


@dataclass
class StackInfo:
    """Where the running services listen, and their process ids."""

    state_dir: str
    pg_port: int
    s3_port: int
    openai_port: int
    s3_pid: int
    openai_pid: int
    smtp_port: int = 0
    smtp_pid: int = 0

    @property
    def pg_data(self) -> Path:
        return Path(self.state_dir) / "pgdata"

    @property
    def mail_dir(self) -> Path:
        """Where the mail sink writes every alert it receives, one .eml file each."""
        return Path(self.state_dir) / "mail"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:.0f}s")


def _pg_run_as() -> dict:
    """PostgreSQL refuses to run as root: run its binaries as the 'pgserver' user, as pgserver does."""
    if os.geteuid() != 0:
        return {}
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return {"user": "pgserver"}


def _start_postgres(pg_data: Path, port: int) -> None:
    import pgserver
    from pgserver._commands import POSTGRES_BIN_PATH

    run_as = _pg_run_as()
    pg_data.mkdir(parents=True, exist_ok=True)
    if run_as:
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(pg_data)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o555)
        os.chown(pg_data, *_uid_gid("pgserver"))
    nondurable = os.environ.get(NONDURABLE_ENV) == "1"
    if not (pg_data / "PG_VERSION").exists():  # a throwaway cluster's initdb need not fsync its files either
        pgserver.initdb(["--auth=trust", "--encoding=utf8", "-U", PG_USER, *(["--no-sync"] if nondurable else [])],
                        pgdata=pg_data, **run_as)
    # TCP logins need a password; only the socket inside the (0700) data folder is trusted, for bootstrap.
    (pg_data / "pg_hba.conf").write_text(PG_HBA)
    opts = f"-h 127.0.0.1 -p {port} -k {pg_data}"
    if nondurable:  # a throwaway cluster (the test suite): no fsync, no full-page writes, cheap password hashing
        opts += " " + " ".join(f"-c {setting}=off" for setting in NONDURABLE_SETTINGS)
        opts += f" -c scram_iterations={THROWAWAY_SCRAM_ITERATIONS}"
    pgserver.pg_ctl(["-w", "-o", opts, "-l", str(pg_data / "log"), "start"], pgdata=pg_data, timeout=60, **run_as)


# PostgreSQL's "non-durable settings" (its manual, 14.5): a crash may lose or corrupt the cluster, which a test
# suite's cluster in a temporary folder can afford; every commit and every CREATE/DROP DATABASE is then far
# cheaper. Only when GRADEFLOW_STACK_NONDURABLE=1 (tests/conftest.py sets it); the demo and `make airflow` stay durable.
NONDURABLE_ENV = "GRADEFLOW_STACK_NONDURABLE"
NONDURABLE_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
# Every TCP login runs SCRAM's PBKDF2 over the stored password's iteration count on both sides: PostgreSQL's
# default 4096 costs ~2.5 ms of the client's CPU and as much of the server's per login (10-20 ms a login under
# load), and the test suite logs in thousands of times. The throwaway cluster hashes its passwords with 16
# iterations (still scram-sha-256); the demo's and `make airflow`'s cluster keeps PostgreSQL's default.
THROWAWAY_SCRAM_ITERATIONS = 16

PG_HBA = """# Written by devstack.stack on every start.
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def _secrets(state_dir: Path) -> dict[str, str]:
    """Random passwords of this state folder's roles, created once (file mode 0600)."""
    path = Path(state_dir) / "secrets.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    wanted = (PG_USER, OWNER_ROLE, AIRFLOW_ROLE, *_tenant_logins())
    if all(role in values for role in wanted):
        return values
    values.update({role: secrets.token_urlsafe(24) for role in wanted if role not in values})
    path.touch(mode=0o600)
    path.chmod(0o600)  # an existing file keeps its mode through touch(): a folder copied with a wider one is narrowed
    path.write_text(json.dumps(values, indent=2))
    return values


def _tenant_logins() -> list[str]:
    """The login role of each institution in include/institutions.yaml (created by the migrate step)."""
    if str(PROJECT_ROOT / "plugins") not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
    from gradeflow.core.config import load_institutions

    return [f"{WORKER_ROLE}_{inst.id}" for inst in load_institutions()]


def _socket_connect(info: StackInfo, dbname: str):
    import psycopg

    return psycopg.connect(host=str(info.pg_data), port=info.pg_port, user=PG_USER, dbname=dbname, autocommit=True)


def _bootstrap_roles(info: StackInfo) -> None:
    """Roles with their passwords, GradeFlow's database owned by the owner role, Airflow's by airflow."""
    from psycopg import sql

    pw = _secrets(Path(info.state_dir))
    roles = {PG_USER: "SUPERUSER", OWNER_ROLE: "LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOBYPASSRLS",
             AIRFLOW_ROLE: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"}
    with _socket_connect(info, "postgres") as conn:
        for role, attributes in roles.items():  # names and attributes are our constants, passwords are bound
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("ALTER ROLE {} " + attributes + " PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(pw[role])))
        # The night's group role holds the grants; NOLOGIN (each institution has its own login, created by
        # migrate as a member); the owner administers it (PG16: CREATEROLE alone may not grant it).
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (WORKER_ROLE,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(WORKER_ROLE)))
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD NULL")
                     .format(sql.Identifier(WORKER_ROLE)))
        conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(WORKER_ROLE),
                                                                       sql.Identifier(OWNER_ROLE)))
        for database, owner in ((GRADEFLOW_DB, OWNER_ROLE), (AIRFLOW_DB, AIRFLOW_ROLE),
                                (AIRFLOW_DEMO_DB, AIRFLOW_ROLE)):
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                          sql.Identifier(owner)))
        for database in (GRADEFLOW_DB, AIRFLOW_DB):  # no login connects to a database it was not given
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(GRADEFLOW_DB),
                                                                    sql.Identifier(OWNER_ROLE)))
    with _socket_connect(info, GRADEFLOW_DB) as conn:  # a state folder from before the owner role: hand it over
        conn.execute(ADOPT_SCHEMA)


ADOPT_SCHEMA = f"""
DO $$
DECLARE r record;
BEGIN
    IF (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public') NOT IN
       ('{OWNER_ROLE}', 'pg_database_owner') THEN
        ALTER SCHEMA public OWNER TO {OWNER_ROLE};
    END IF;
    FOR r IN SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
                AND relowner <> '{OWNER_ROLE}'::regrole LOOP
        EXECUTE format('ALTER TABLE public.%I OWNER TO {OWNER_ROLE}', r.relname);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> '{OWNER_ROLE}'::regrole LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER_ROLE}', r.fn);
    END LOOP;
END $$;
"""


def connect_as(info: StackInfo, role: str, dbname: str = GRADEFLOW_DB, **kwargs):
    """A psycopg connection to the embedded PostgreSQL as one of its roles (tests, demo, bootstrap)."""
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=info.pg_port, user=role, dbname=dbname,
                           password=_secrets(Path(info.state_dir))[role], **kwargs)


def migrate(info: StackInfo) -> list[str]:
    """The migrate step, as the owner role: schema, tenants, row-level security, read-only roles."""
    if str(PROJECT_ROOT / "plugins") not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
    from gradeflow.core import db

    pw = _secrets(Path(info.state_dir))
    with connect_as(info, OWNER_ROLE, autocommit=True) as conn:
        return db.migrate(conn, passwords={login: pw[login] for login in _tenant_logins()})


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _spawn(args: list[str], log_path: Path) -> int:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        args, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True
    )
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _pg_running(pg_data: Path) -> bool:
    pid_file = pg_data / "postmaster.pid"
    return pid_file.exists() and _alive(int(pid_file.read_text().split()[0]))


def status(state_dir: Path = DEFAULT_STATE_DIR) -> StackInfo | None:
    """The running stack recorded in state_dir, or None when any part of it is down."""
    path = Path(state_dir) / "stack.json"
    if not path.exists():
        return None
    info = StackInfo(**json.loads(path.read_text()))
    if _pg_running(info.pg_data) and all(pid and _alive(pid) for pid in (info.s3_pid, info.openai_pid, info.smtp_pid)):
        return info
    return None


def up(state_dir: Path = DEFAULT_STATE_DIR, emulator_timing_scale: float = 1.0) -> StackInfo:
    """Start PostgreSQL, the S3 server, the Batch API emulator and the mail sink (or reuse the running ones)."""
    state_dir = Path(state_dir).resolve()
    running = status(state_dir)
    if running:
        _bootstrap_roles(running)
        migrate(running)
        return running
    down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    info = StackInfo(str(state_dir), _free_port(), _free_port(), _free_port(), 0, 0, _free_port(), 0)
    # The three servers import their Python packages while PostgreSQL's initdb and start run.
    info.s3_pid = _spawn(
        [sys.executable, "-m", "devstack.s3_server", "-H", "127.0.0.1", "-p", str(info.s3_port)], state_dir / "s3.log"
    )
    info.openai_pid = _spawn(
        [sys.executable, "-m", "devstack.batch_emulator", "--host", "127.0.0.1", "--port", str(info.openai_port),
         "--timing-scale", str(emulator_timing_scale)],
        state_dir / "batch_emulator.log",
    )
    info.smtp_pid = _spawn(
        [sys.executable, "-m", "devstack.mail_sink", "--host", "127.0.0.1", "--port", str(info.smtp_port),
         "--dir", str(info.mail_dir)],
        state_dir / "mail_sink.log",
    )
    (state_dir / "stack.json").write_text(json.dumps(asdict(info), indent=2))  # what `down` stops, from here on
    _start_postgres(info.pg_data, info.pg_port)
    _wait_port(info.s3_port, "moto S3 server")
    _wait_port(info.openai_port, "Batch API emulator")
    _wait_port(info.smtp_port, "mail sink")
    _bootstrap_roles(info)
    migrate(info)
    _ensure_bucket(info)
    return info


def _ensure_bucket(info: StackInfo) -> None:
    import boto3

    s3 = boto3.client("s3", **s3_client_kwargs(info))
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)


def empty_bucket(s3) -> None:
    """Delete every object of the stack's bucket: one DeleteObjects call per listed page (up to 1,000 keys), not
    one request per key (a day of the benchmark leaves hundreds)."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        if page.get("Contents"):
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": item["Key"]} for item in page["Contents"]],
                                                     "Quiet": True})


def s3_client_kwargs(info: StackInfo) -> dict:
    """Keyword arguments for a boto3 S3 client on the embedded S3 server."""
    return {
        "endpoint_url": f"http://127.0.0.1:{info.s3_port}",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",  # noqa: S106 - moto's dummy credentials
        "region_name": "us-east-1",
    }


def down(state_dir: Path = DEFAULT_STATE_DIR, discard: bool = False) -> None:
    """Stop whatever part of the stack recorded in state_dir is still running.

    `discard`: the folder is deleted next (the tests' stacks), so PostgreSQL stops at once (`-m immediate`,
    no shutdown checkpoint); its data would need crash recovery to start again."""
    path = Path(state_dir) / "stack.json"
    if path.exists():
        info = StackInfo(**json.loads(path.read_text()))
        for pid in (info.s3_pid, info.openai_pid, info.smtp_pid):
            if pid and _alive(pid):
                os.killpg(pid, 15)
        path.unlink()
    pg_data = Path(state_dir) / "pgdata"
    if _pg_running(pg_data):
        import pgserver

        try:
            pgserver.pg_ctl(["-w", "-m", "immediate" if discard else "fast", "stop"], pgdata=pg_data, timeout=60,
                            **_pg_run_as())
        except subprocess.CalledProcessError:  # already shutting down, or pg_ctl lost it: stop the postmaster
            pid = int((pg_data / "postmaster.pid").read_text().split()[0])
            if _alive(pid):
                os.kill(pid, 15)


def env(info: StackInfo, demo: bool = False) -> dict[str, str]:
    """Environment for GradeFlow and Airflow on this stack: connections, metadata DB, folders.

    `demo`: the demo's own Airflow metadata database and home (AIRFLOW_DEMO_DB), apart from `make airflow`'s."""
    s3 = s3_client_kwargs(info)
    airflow_home = Path(info.state_dir) / ("airflow-demo" if demo else "airflow")
    pw = _secrets(Path(info.state_dir))
    airflow_login = AIRFLOW_ROLE if demo else _airflow_db_owner(info)
    airflow_db = AIRFLOW_DEMO_DB if demo else AIRFLOW_DB
    tenants = {  # one connection per institution, logging in as its own role (docs/security.md)
        f"AIRFLOW_CONN_GRADEFLOW_DB_{login.removeprefix(WORKER_ROLE + '_').upper()}": json.dumps({
            "conn_type": "postgres", "host": "127.0.0.1", "port": info.pg_port,
            "login": login, "password": pw[login], "schema": GRADEFLOW_DB,
        }) for login in _tenant_logins()}
    return {
        **tenants,
        "AIRFLOW_CONN_GRADEFLOW_S3": json.dumps({
            "conn_type": "aws", "login": s3["aws_access_key_id"], "password": s3["aws_secret_access_key"],
            "extra": {"endpoint_url": s3["endpoint_url"], "region_name": s3["region_name"]},
        }),
        "AIRFLOW_CONN_GRADEFLOW_OPENAI": json.dumps({
            "conn_type": "openai", "host": f"http://127.0.0.1:{info.openai_port}/v1", "password": EMULATOR_KEY,
        }),
        "AIRFLOW_CONN_GRADEFLOW_SMTP": json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": info.smtp_port,
            "extra": {"from_email": "gradeflow@localhost", "disable_tls": True, "disable_ssl": True,
                      "timeout": 10, "retry_limit": 1},
        }),
        "GRADEFLOW_BUCKET": BUCKET,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{quote(airflow_login)}:"
            f"{quote(pw[airflow_login], safe='')}@127.0.0.1:{info.pg_port}/{quote(airflow_db)}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Sized for a small machine (2 cores): one API worker, four task slots, one DAG processor.
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)]),
    }


def owner_env(info: StackInfo) -> dict[str, str]:
    """The owner connection (migrations, cross-institution views): for admin tools, never for the night."""
    return {"AIRFLOW_CONN_GRADEFLOW_DB_OWNER": json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": info.pg_port,
        "login": OWNER_ROLE, "password": _secrets(Path(info.state_dir))[OWNER_ROLE], "schema": GRADEFLOW_DB})}


def _airflow_db_owner(info: StackInfo) -> str:
    """`airflow`; a state folder whose metadata database predates that role keeps the superuser."""
    with _socket_connect(info, "postgres") as conn:
        row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                           (AIRFLOW_DB,)).fetchone()
    return row[0] if row and row[0] in (AIRFLOW_ROLE, PG_USER) else AIRFLOW_ROLE


def main(argv: list[str] | None = None) -> int:
    """CLI: up | down | env | status | migrate (the owner's migrate step on the running stack)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "env", "status", "migrate"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    if args.command == "down":
        down(args.state_dir)
        print("embedded stack stopped")
        return 0
    info = up(args.state_dir) if args.command in ("up", "env") else status(args.state_dir)
    if info is None:
        print("embedded stack is not running")
        return 1
    if args.command == "migrate":
        applied = migrate(info)
        from gradeflow.core.config import institutions_file

        print(f"migrated: {len(applied)} migration(s) applied now; institutions registered from {institutions_file()}")
        return 0
    if args.command == "env":
        for key, value in env(info).items():
            print(f"export {key}={shlex.quote(value)}")
    else:
        print(f"PostgreSQL 127.0.0.1:{info.pg_port}  S3 http://127.0.0.1:{info.s3_port}  "
              f"Batch API http://127.0.0.1:{info.openai_port}/v1  mail sink 127.0.0.1:{info.smtp_port} "
              f"({info.mail_dir})  (state in {info.state_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
