#!/bin/bash
# The database server's roles and databases. Run once by the postgres image's entrypoint, as its bootstrap
# superuser (POSTGRES_USER, whose password is given to the postgres service and to no other container),
# when the data volume is first initialised. Passwords come from the environment (set them in .env, see
# .env.example); none is written in any file of the repository.
#   airflow           Airflow's metadata role: a plain login that owns the airflow database; no superuser
#   gradeflow_owner   owns GradeFlow's schema, runs `python -m gradeflow.core.db migrate` (only in the
#                     airflow-init service); CREATEROLE for the per-institution roles; no superuser, no BYPASSRLS
#   gradeflow_worker  NOLOGIN group role of the night's grants; each institution's login gradeflow_worker_<id>
#                     is created by migrate as a member of it (its password from gradeflow_db_<id>)
# See docs/security.md.
set -euo pipefail

for var in AIRFLOW_DB_PASSWORD GRADEFLOW_DB_OWNER_PASSWORD; do
    value="${!var:-}"
    if [ -z "$value" ] || [[ "$value" == *change-me* ]]; then
        echo "init-gradeflow-db: set $var in .env to a real password (not empty, not the example's change-me)" >&2
        exit 1
    fi
done

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv airflow_pw AIRFLOW_DB_PASSWORD
\getenv owner_pw GRADEFLOW_DB_OWNER_PASSWORD
CREATE ROLE airflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
CREATE ROLE gradeflow_owner LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE gradeflow_worker NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
GRANT gradeflow_worker TO gradeflow_owner WITH ADMIN OPTION;
CREATE DATABASE gradeflow OWNER gradeflow_owner;
REVOKE ALL ON DATABASE gradeflow FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE gradeflow TO gradeflow_worker;
SQL
