#!/bin/sh
# MinIO's bucket and one user per institution (the minio-init service, the only one with MinIO's root user).
# GRADEFLOW_S3_TENANTS: "<id>:<s3_prefix> ..." (the institutions of include/institutions.yaml); each user
# gradeflow-<id> gets the secret MINIO_SECRET_<ID> (upper case) and a policy limited to the institution's
# prefixes, the same pair as its Airflow connection gradeflow_s3_<id>. Idempotent. See docs/security.md.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$GRADEFLOW_BUCKET"
for tenant in $GRADEFLOW_S3_TENANTS; do
    id=${tenant%%:*}
    prefix=${tenant#*:}
    var=MINIO_SECRET_$(echo "$id" | tr '[:lower:]' '[:upper:]')
    eval "secret=\${$var:-}"
    if [ -z "$secret" ]; then echo "init-minio: set $var in .env" >&2; exit 1; fi
    objects=""
    listing=""
    for top in incoming archive receipts rejects releases reports reviews batches; do
        objects="$objects\"arn:aws:s3:::$GRADEFLOW_BUCKET/$top/$prefix/*\","
        listing="$listing\"$top/$prefix/*\",\"$top/$prefix/\","
    done
    cat > "/tmp/gradeflow-$id.json" <<POLICY
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
   "Resource": [${objects%,}]},
  {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::$GRADEFLOW_BUCKET"],
   "Condition": {"StringLike": {"s3:prefix": [${listing%,}]}}},
  {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::$GRADEFLOW_BUCKET"]}
]}
POLICY
    mc admin policy create local "gradeflow-$id" "/tmp/gradeflow-$id.json"
    mc admin user add local "gradeflow-$id" "$secret"
    mc admin policy attach local "gradeflow-$id" --user "gradeflow-$id" || true  # already attached
done
mc ls "local/$GRADEFLOW_BUCKET"
