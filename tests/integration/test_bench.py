"""devstack.bench: the night's benchmark runs end to end at a tiny size (so it cannot rot).

No time is asserted (benchmarks print figures); what is checked is that every stage ran on the real
embedded stack and that the night's counts add up: every good row loaded, every answer released.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devstack import stack

pytestmark = pytest.mark.heavy(seconds=30)  # the whole night, in a child process


def test_bench_runs_every_stage_at_a_tiny_size(embedded_stack, tmp_path):
    # On this worker's running stack (--keep-stack leaves it running): the bench empties GradeFlow's database, the
    # bucket and the emulator first, as every test's own fixtures do; its tenants' roles stay in the cluster, and
    # the next test's database is migrated again (tests/conftest.py, fresh_database).
    output = tmp_path / "bench.json"
    output.write_text(json.dumps({"many_institutions_night": {"kept": True}}))  # another bench's key
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "devstack.bench", "--answers", "2000", "--first-day-answers", "400", "--skip-parse",
         "--in-process", "--state-dir", str(embedded_stack.state_dir), "--keep-stack", "--output", str(output)],
        cwd=stack.PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
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
    assert "night without the model's time" in done.stdout
