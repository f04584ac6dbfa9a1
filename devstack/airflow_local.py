"""`make airflow`: Airflow standalone (scheduler, triggerer, API server + UI) on the embedded stack.

Open http://localhost:8080; the admin password is printed by Airflow and kept in
`.devstack/airflow/simple_auth_manager_passwords.json.generated`. Stop with Ctrl-C, then
`make stack-down` to stop PostgreSQL, S3 and the Batch API emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys

from devstack import stack


def main() -> int:
    """Start the stack, migrate Airflow's database, create the Batch API pool, run `airflow standalone`."""
    info = stack.up()
    os.environ.update(stack.env(info))
    os.environ.setdefault("GRADEFLOW_BATCH_POLL_SECONDS", "5")
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    # standalone starts its components as `airflow ...` from PATH: use this virtual environment's.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], check=True)
    subprocess.run([*airflow, "pools", "set", "openai_batch_api", "4", "Batch API calls"], check=True)
    print(f"Embedded stack: PostgreSQL 127.0.0.1:{info.pg_port}, S3 http://127.0.0.1:{info.s3_port}, "
          f"Batch API http://127.0.0.1:{info.openai_port}/v1. Drop a sample day with:\n"
          "  .venv/bin/python -m devstack.demo --drop-only --day 2026-11-23\n"
          "then trigger <institution>__ingest (or __prepare) with exam_day 2026-11-23 from the UI.")
    return subprocess.call([*airflow, "standalone"])


if __name__ == "__main__":
    sys.exit(main())
