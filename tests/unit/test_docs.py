"""The user documentation stays true: linked from the README, every institution field described,
every connection named, and every UTC time beside a local schedule recomputed from the time-zone database."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import gradeflow.core.config as config
from gradeflow.core.config import BATCH_API_POOL, Institution, get_institution, load_institutions

PAGES = ("run-against-real-services.md", "add-an-institution.md", "operate-a-night.md", "scale-out.md")
LOCAL = {stage: (s.first, s.last) for stage, s in config.SCHEDULES.items()}
JANUARY, JULY = date(2026, 1, 15), date(2026, 7, 15)


def _utc(inst: Institution, day: date, hhmm: str, stage: str) -> str:
    """A local schedule time as UTC "HH:MM", with "(+1 d)" when it falls on another date than the exam day."""
    hour, minute = map(int, hhmm.split(":"))
    local_day = day + timedelta(days=1 if stage == "publish" else 0)
    at = datetime(local_day.year, local_day.month, local_day.day, hour, minute, tzinfo=inst.tz)
    at = at.astimezone(ZoneInfo("UTC"))
    shift = (at.date() - day).days
    return at.strftime("%H:%M") + (f" ({shift:+d} d)" if shift else "")


def _utc_cell(inst: Institution, day: date, stage: str) -> str:
    start, end = LOCAL[stage]
    return _utc(inst, day, start, stage) + (f"–{_utc(inst, day, end, stage)}" if end else "")


@pytest.fixture(scope="module")
def docs(project_root) -> dict[str, str]:
    return {name: (project_root / "docs" / name).read_text() for name in PAGES}


def test_readme_links_every_page(project_root):
    readme = (project_root / "README.md").read_text()
    for name in PAGES:
        assert f"(docs/{name})" in readme, name


def test_every_institution_field_is_described(docs):
    table = {m for m in re.findall(r"^\| `(\w+)` \|", docs["add-an-institution.md"], re.MULTILINE)}
    fields = {f.name for f in dataclasses.fields(Institution)}
    assert fields <= table, f"undocumented fields: {sorted(fields - table)}"
    assert not table - fields, f"documented fields that do not exist: {sorted(table - fields)}"


def test_every_connection_and_the_pool_are_explained(docs):
    page = docs["run-against-real-services.md"]
    per_institution = {config.POSTGRES_CONN_ID, config.AWS_CONN_ID}  # gradeflow_db_<id>, gradeflow_s3_<id>
    for name, value in vars(config).items():
        if name.endswith("_CONN_ID"):
            if value in per_institution:
                assert f"`{value}_<id>`" in page and f"AIRFLOW_CONN_{value.upper()}_NORTHFIELD" in page, value
            else:
                assert f"`{value}`" in page and f"AIRFLOW_CONN_{value.upper()}" in page, value
    assert f"airflow pools set {BATCH_API_POOL} " in page and "GRADEFLOW_BUCKET" in page


def test_schedule_table_matches_the_time_zone_database(docs):
    rows = re.findall(r"^\| `(\w+)` \| ([\w/]+) \| `\w+__(\w+)` \| [^|]+ \| ([^|]+) \| ([^|]+) \|$",
                      docs["operate-a-night.md"], re.MULTILINE)
    assert {r[0] for r in rows} >= {i.id for i in load_institutions()}
    for inst_id, tz, stage, january, july in rows:
        inst = get_institution(inst_id)
        assert tz == inst.timezone
        assert (january.strip(), july.strip()) == (_utc_cell(inst, JANUARY, stage), _utc_cell(inst, JULY, stage)), (
            inst_id, stage)


def test_readme_schedule_shows_utc_beside_local(project_root):
    readme = (project_root / "README.md").read_text()
    order = [get_institution(i) for i in ("northfield", "lakeshore", "rheinwald")]
    assert "UTC for New York / Kolkata / Berlin in January" in readme
    for stage in LOCAL:
        cells = [_utc_cell(inst, JANUARY, stage).replace(" (+1 d)", "") for inst in order]
        row = next(line for line in readme.splitlines() if f"`<id>__{stage}`" in line and line.startswith("|"))
        found = re.search(r"\(([^)]*(?:\([^)]*\))?[^)]*)\) \| `<id>__", row).group(1)
        assert [c.replace(" +1 d", "") for c in found.split(" / ")] == cells, (stage, found)


def test_every_image_a_page_shows_is_in_the_repository(project_root):
    """docs/img/approval.png (the faculty sign-off waiting in the Airflow UI) and any other picture a page shows;
    tests/e2e/test_signoff_airflow.py refreshes the screenshot with GRADEFLOW_UPDATE_SCREENSHOTS=1."""
    shown = []
    for page in (project_root / "docs").glob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            shown.append(target)
            assert (page.parent / target).is_file(), f"{page.name} shows {target}, which does not exist"
    assert "img/approval.png" in shown
