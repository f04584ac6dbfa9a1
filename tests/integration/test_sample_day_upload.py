"""devstack.sample_day.upload_day on the embedded S3 (moved from tests/unit/test_sample_day.py: it needs an S3
server, and the unit tier runs without services)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from devstack import sample_day, stack


def _all_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]


def test_upload_day_puts_every_file_in_arrival_order(s3, tmp_path):
    root = tmp_path / "sample-day"
    manifest = sample_day.generate_day(root, ["northfield", "lakeshore", "rheinwald"], date(2026, 11, 23), seed=7,
                                       submissions_per_exam=20)
    keys = sample_day.upload_day(root, s3, stack.BUCKET)
    listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.BUCKET)
              for o in page.get("Contents", [])]
    assert sorted(listed) == sorted(keys) == sorted(_all_files(root))
    for inst, entry in manifest.items():
        assert [k for k in keys if k.startswith(f"incoming/{inst}/")] == entry["files"]
    exam_positions = [i for i, k in enumerate(keys) if "/exams/" in k]
    assert exam_positions == list(range(len(exam_positions)))
    assert sorted(keys[-len(manifest):]) == sorted(e["duplicate_file"] for e in manifest.values())
    for key in keys:
        body = s3.get_object(Bucket=stack.BUCKET, Key=key)["Body"].read()
        assert body == (root / key).read_bytes()
