"""devstack.bench: the night's benchmark runs end to end at a tiny size (so it cannot rot).

No time is asserted (benchmarks print figures); what is checked is that every stage ran on the real
embedded stack and that the night's counts add up: every good row loaded, every answer released.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from devstack import bench

pytestmark = pytest.mark.heavy(seconds=25)  # the whole night


def test_bench_runs_every_stage_at_a_tiny_size(embedded_stack, tmp_path, capsys):
    # On this worker's running stack (--keep-stack leaves it running): the bench empties GradeFlow's database, the
    # bucket and the emulator first, as every test's own fixtures do; its tenants' roles stay in the cluster, and
    # the next test's database is migrated again (tests/conftest.py, fresh_database). `--in-process`, in this
    # process: the bench's own child would import pandas, pyarrow, Great Expectations and the providers again (~4 s
    # of CPU); what the bench sets in the environment and sys.path is put back after it.
    output = tmp_path / "bench.json"
    output.write_text(json.dumps({"many_institutions_night": {"kept": True}}))  # another bench's key
    saved_env, saved_path = dict(os.environ), list(sys.path)
    try:
        code = bench.main(["--answers", "2000", "--first-day-answers", "400", "--skip-parse", "--in-process",
                           "--state-dir", str(embedded_stack.state_dir), "--keep-stack", "--output", str(output)])
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    report = json.loads(output.read_text())
    stages = {row["stage"]: row for row in report["stages"]}
    assert set(stages) >= {"raw COPY (ceiling)", "indexed COPY (ceiling)", "ingest", "order", "rule", "batches",
                           "submit", "collect", "validate", "release", "export", "first_day:ingest", "first_day:order",
                           "first_day:rule"}
    answers = report["summary"]["answers"]
    assert 1900 <= answers <= 2200
    assert stages["ingest"]["rows_loaded"] == answers
    assert stages["ingest"]["rows_rejected"] == report["summary"]["bad_rows"]
    assert stages["ingest"]["ceiling_ratio"] > 0 and stages["ingest"]["indexed_ceiling_ratio"] > 0
    # Both ceilings of the same run, and ingest against each (issue 18).
    ceilings = report["ceilings"]
    assert ceilings["raw_copy_unindexed"]["rows"] >= answers
    assert answers <= ceilings["copy_into_indexed_answers"]["rows"] <= ceilings["raw_copy_unindexed"]["rows"]
    assert ceilings["ingest_over_raw"] == stages["ingest"]["ceiling_ratio"]
    assert ceilings["ingest_over_indexed"] == stages["ingest"]["indexed_ceiling_ratio"]
    groups = report["stage_groups"]
    assert groups["prepare (order + rule + batches)"]["stages"] == ["order", "rule", "batches"]
    assert groups["publish (validate + release + export)"]["seconds"] == pytest.approx(
        sum(stages[s]["seconds"] for s in ("validate", "release", "export")), abs=0.05)
    assert report["goals"]["night_seconds_without_model"]["goal"] == 120
    assert "met" in report["goals"]["peak_rss_mb"]
    assert report["many_institutions_night"] == {"kept": True}  # bench.json is updated, not overwritten
    assert stages["rule"]["rows"] + stages["batches"]["answers"] <= answers
    assert stages["collect"]["rows"] == stages["batches"]["rows"] == stages["submit"]["rows"] > 0
    assert stages["validate"]["rows"] == stages["release"]["rows"] == stages["export"]["rows"] == answers
    for row in report["stages"]:
        assert row["seconds"] >= 0 and row["peak_rss_mb"] > 0 and row["load_avg_1m"] >= 0
    assert "night without the model's time" in printed
