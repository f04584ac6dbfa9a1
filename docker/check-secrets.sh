#!/bin/sh
# Preflight (the `preflight` service; every other service waits for it): refuse to start with any
# placeholder secret of .env.example or .env.owner still in place (any value containing "change-me",
# inside connection strings too) or with an empty Fernet key. Prints the names, never the values.
set -eu
bad=""
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
    eval "value=\${$name}"
    case "$value" in *change-me*) bad="$bad $name" ;; esac
done
[ -n "${AIRFLOW_FERNET_KEY:-}" ] || bad="$bad AIRFLOW_FERNET_KEY(empty)"
# CeleryExecutor needs the celery profile's broker and workers, and the profile is useless without it.
celery_profile=no
case ",${COMPOSE_PROFILES:-}," in *,celery,*) celery_profile=yes ;; esac
case "${AIRFLOW_EXECUTOR:-LocalExecutor}:$celery_profile" in
    LocalExecutor:no | CeleryExecutor:yes) ;;
    *) echo "preflight: AIRFLOW_EXECUTOR=${AIRFLOW_EXECUTOR:-LocalExecutor} needs" \
            "COMPOSE_PROFILES with celery exactly when it is CeleryExecutor (got COMPOSE_PROFILES=${COMPOSE_PROFILES:-})" >&2
       exit 1 ;;
esac
if [ -n "$bad" ]; then
    echo "preflight: replace the placeholder or empty secrets in .env / .env.owner:$bad" >&2
    exit 1
fi
echo "preflight: no placeholder secrets"
