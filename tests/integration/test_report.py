"""The daily report: a real day (ingest, rules, the emulator, gate, release) rendered to S3 and in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from gradeflow.core.config import get_institution
from gradeflow.release import publish, report

from .helpers import answers_for
from .test_pipeline import EXAM_DAY, GOOD, NORTH, _grade, _load, _prepare

PLOTS = ("plot-states", "plot-scores-0", "plot-reasons", "plot-tokens", "plot-task-durations", "plot-timings")


def _released_day(conn, s3, emulator, openai_client):
    emulator.faults(refusal_every=3)  # some answers go to human review, so reasons have something to show
    rows = []
    for i in range(12):
        rows += answers_for(f"s{i}", f"st{i}", GOOD if i % 2 else f"it makes ATP {i}", minute=i,
                            q1="B" if i % 3 else "A")
    _load(conn, s3, rows)
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    assert gate.success, gate.failures
    publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)


def _airflow_timings():
    """What airflow_stage_timings returns inside a publish run (a test has no Airflow run to ask)."""
    return [{"stage": "prepare", "run_id": "scheduled__x", "run_state": "success", "task": t, "state": "success",
             "seconds": s} for t, s in (("ingest_files", 3.5), ("grade_by_rule", 1.2), ("build_batches", 4.0))]


def test_report_is_written_self_contained_with_every_plot(conn, s3, emulator, openai_client):
    _released_day(conn, s3, emulator, openai_client)
    key = report.write_report(conn, s3, NORTH, EXAM_DAY, _airflow_timings())
    assert key == f"reports/northfield/{EXAM_DAY}/report-v1.html"
    page = s3.get_object(Bucket="gradeflow", Key=key)["Body"].read().decode()
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b|url\(|@import|\bsrc=", page, re.IGNORECASE)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    for plot in PLOTS:
        svg = re.search(rf'<svg class="plot" id="{plot}"[^>]*><title>([^<]+)</title>', page)
        assert svg and svg.group(1).strip(), f"plot {plot} missing or untitled"
    counts = publish.day_counts(conn, NORTH, EXAM_DAY)
    states = report.gather(conn, NORTH, EXAM_DAY).states
    assert sum(s["answers"] for s in states) == counts["answers"]  # every answer in exactly one drawn state
    assert {s["state"] for s in states} >= {"rule", "model", "in review"}
    assert f"<b>{counts['answers']}</b>answers" in page and f"<b>{counts['submissions']}</b>submissions" in page
    assert "released as v1" in page and ">refused</td>" in page  # the emulator's refusals: a review reason
    assert "prepare · build_batches" in page and "batch job 1 (attempt 1)" in page
    assert "No human grades yet" in page


def test_a_day_with_nothing_renders_and_says_so(conn, s3):
    key = report.write_report(conn, s3, NORTH, EXAM_DAY)
    assert key == f"reports/northfield/{EXAM_DAY}/report-unreleased.html"
    page = s3.get_object(Bucket="gradeflow", Key=key)["Body"].read().decode()
    assert "not released" in page and "No answers were received" in page and "Nothing ran" in page


def test_agreement_section_draws_when_rows_exist(conn):
    data = report.gather(conn, NORTH, EXAM_DAY)
    assert report.agreement_rows(conn, NORTH, EXAM_DAY) == [] and data.agreement == []
    data.agreement = [{"question_id": "q4", "pairs": 12, "mean_abs_diff": 0.5, "exact_share": 0.75}]
    page = report.render(data)
    assert 'id="plot-agreement"' in page and "75.0 %" in page and "No human grades yet" not in page


def test_report_reads_only_its_own_institution(conn, s3, emulator, openai_client, tenant_conn):
    _released_day(conn, s3, emulator, openai_client)
    other = get_institution("lakeshore")
    page = report.render(report.gather(tenant_conn(other.id), other, EXAM_DAY))  # its own connection, as in tasks
    assert "No answers were received" in page and "bio-101" not in page and "batch job" not in page


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    if not found:
        pytest.skip("chromium is not installed (apt-get install --no-install-recommends chromium)")
    return found


def test_report_renders_in_headless_chromium(conn, s3, emulator, openai_client, tmp_path):
    from PIL import Image

    chromium = _chromium()
    _released_day(conn, s3, emulator, openai_client)
    key = report.write_report(conn, s3, NORTH, EXAM_DAY, _airflow_timings())
    html = tmp_path / "report.html"
    html.write_bytes(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read())
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1800",
           f"--screenshot={shot}", html.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-3000:]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    non_white = sum(n for n, rgb in colours if sum(rgb) < 720)
    share = non_white / (image.width * image.height)
    print(f"screenshot {image.width}x{image.height}: {len(colours)} colours, {share:.1%} non-white")
    assert len(colours) > 50 and share > 0.03
    # The plot colours are on screen, not just in the file: the states' blue and the model's green.
    rgbs = {rgb for _, rgb in colours}
    assert (0x4E, 0x79, 0xA7) in rgbs and (0x59, 0xA1, 0x4F) in rgbs
