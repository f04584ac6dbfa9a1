"""S3 access through Airflow's S3Hook (connection `gradeflow_s3`): list, read, write, archive.

Keys are always built from an Institution (`Institution.key`), so one institution's code path
never lists or writes under another's prefix.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING

from gradeflow.core.config import AWS_CONN_ID, bucket

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, size and arrival time."""

    key: str
    size: int
    last_modified: datetime


def client(institution_id: str | None = None) -> S3Client:
    """A boto3 S3 client built by S3Hook from the Airflow connection (endpoint_url honoured).

    With an institution, its own connection `gradeflow_s3_<id>` when one is configured (a user whose
    policy reaches only that institution's prefixes, docs/security.md), else the shared `gradeflow_s3`.

    Built once per process and connection: S3Hook builds a new boto3 session each time, which reads botocore's
    endpoint and service files again (~0.15 s of CPU a client; a night's tasks ask for one per step). The
    connection is looked up on every call and a client is reused only while its values (type, host, login,
    password, extras) are unchanged, so a changed connection gets a new client, which replaces the old one (a
    rotated secret is not kept). boto3 clients are thread-safe; a forked process builds its own.

    Python's cyclic garbage collector is paused while the client is built: botocore parses its endpoint data
    (`endpoints.json`, 1.2 MB, into OrderedDicts) for every new session, and those allocations set off full
    collections over everything a task has imported (Airflow, pandas, pyarrow: ~400,000 objects), 0.25-0.8 s of
    a 0.15 s build (issue 18, the export). Reference counting still frees what is dropped; the parsed data
    stays with the client.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        from airflow.exceptions import AirflowNotFoundException
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        conn_id = AWS_CONN_ID
        conn = None
        if institution_id:
            try:
                conn = S3Hook.get_connection(f"{AWS_CONN_ID}_{institution_id}")
                conn_id = f"{AWS_CONN_ID}_{institution_id}"
            except AirflowNotFoundException:
                pass
        conn = conn or S3Hook.get_connection(conn_id)
        key = (os.getpid(), conn_id)
        values = (conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.extra)
        with _CLIENTS_LOCK:
            known = _CLIENTS.get(key)
        if known is not None and known[0] == values:
            return known[1]
        built = S3Hook(aws_conn_id=conn_id).get_conn()
        with _CLIENTS_LOCK:  # replaces a client built from older values: a rotated secret is not kept
            _CLIENTS[key] = (values, built)
        return built
    finally:
        if enabled:
            gc.enable()


_CLIENTS: dict[tuple, tuple] = {}  # (pid, conn_id) -> (the connection's values, the client built from them)
_CLIENTS_LOCK = threading.Lock()


def list_objects(s3: S3Client, prefix: str) -> list[S3Object]:
    """Every object under prefix, in arrival order (LastModified, then key)."""
    found: list[S3Object] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix):
        for item in page.get("Contents", []):
            found.append(S3Object(item["Key"], item["Size"], item["LastModified"]))
    return sorted(found, key=lambda obj: (obj.last_modified, obj.key))


def read_bytes(s3: S3Client, key: str) -> bytes:
    """The whole object."""
    return s3.get_object(Bucket=bucket(), Key=key)["Body"].read()


SPOOL_IN_MEMORY = 16 * 1024 * 1024  # a bigger object is spooled to a temporary file on disk


def read_spooled(s3: S3Client, key: str, in_memory: int = SPOOL_IN_MEMORY) -> tuple[IO[bytes], str]:
    """The object streamed in blocks into a temporary file (in memory up to `in_memory` bytes, then on
    disk), rewound, with the SHA-256 of its bytes: a big file is never held whole in memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=in_memory)  # noqa: SIM115 - returned open; the caller closes it
    try:
        digest = hashlib.sha256()
        for block in s3.get_object(Bucket=bucket(), Key=key)["Body"].iter_chunks(chunk_size=1024 * 1024):
            digest.update(block)
            spool.write(block)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool, digest.hexdigest()


def write_bytes(s3: S3Client, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Write (or overwrite) one object; overwriting the same key keeps reruns idempotent."""
    s3.put_object(Bucket=bucket(), Key=key, Body=data, ContentType=content_type)


def write_chunks(s3: S3Client, key: str, chunks: Iterable[bytes], content_type: str = "application/octet-stream",
                 in_memory: int = SPOOL_IN_MEMORY) -> int:
    """Write (or overwrite) one object from its pieces, in order, and return its size in bytes: the pieces are
    spooled into a temporary file (in memory up to `in_memory` bytes, then on disk) and sent in one PUT, so a
    big object is never held whole in memory (a night's batch input file is up to 200 MB)."""
    with tempfile.SpooledTemporaryFile(max_size=in_memory) as spool:
        size = 0
        for chunk in chunks:
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
        s3.put_object(Bucket=bucket(), Key=key, Body=spool, ContentType=content_type)
    return size


def upload_file(s3: S3Client, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
    """Write (or overwrite) one object from a local file, in parts of 16 MB when large (multipart upload)."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=2)
    s3.upload_file(str(path), bucket(), key, ExtraArgs={"ContentType": content_type}, Config=config)


def exists(s3: S3Client, key: str) -> bool:
    """Whether the key exists."""
    return bool(s3.list_objects_v2(Bucket=bucket(), Prefix=key, MaxKeys=1).get("KeyCount"))


def archive(s3: S3Client, key: str, archived_key: str) -> None:
    """Copy the original to its archive key, then remove it from incoming (copy first: nothing lost)."""
    s3.copy_object(Bucket=bucket(), Key=archived_key, CopySource={"Bucket": bucket(), "Key": key})
    s3.delete_object(Bucket=bucket(), Key=key)
