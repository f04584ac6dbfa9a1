#!/bin/bash
# GradeFlow's roles and database beside Airflow's metadata database. Run once by the postgres image,
# as its superuser, when the data volume is first initialised. Passwords come from the environment
# (set them in .env, see .env.example); none is written in any file of the repository.
#   gradeflow_owner   owns the schema, runs `python -m gradeflow.core.db migrate` (CREATEROLE for the
#                     per-institution read-only roles); no superuser, no BYPASSRLS
#   gradeflow_worker  the night's login: DML under row-level security, no DDL, no BYPASSRLS
# See docs/security.md.
set -euo pipefail

for var in GRADEFLOW_DB_OWNER_PASSWORD GRADEFLOW_DB_WORKER_PASSWORD; do
    value="${!var:-}"
    if [ -z "$value" ] || [[ "$value" == change-me* ]]; then
        echo "init-gradeflow-db: set $var in .env to a real password (not empty, not the example's change-me)" >&2
        exit 1
    fi
done

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv owner_pw GRADEFLOW_DB_OWNER_PASSWORD
\getenv worker_pw GRADEFLOW_DB_WORKER_PASSWORD
CREATE ROLE gradeflow_owner LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE gradeflow_worker LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'worker_pw';
CREATE DATABASE gradeflow OWNER gradeflow_owner;
REVOKE ALL ON DATABASE gradeflow FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE gradeflow TO gradeflow_worker;
SQL
