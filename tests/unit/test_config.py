from zoneinfo import ZoneInfo

import pytest

from gradeflow.core.config import PUBLISH_AT, SCHEDULES, STAGES, ConfigError, load_institutions


def test_sample_institutions_span_three_kinds_of_time_zone():
    insts = load_institutions()
    assert len(insts) >= 3 and [i.id for i in insts] == sorted(i.id for i in insts)
    zones = {i.timezone for i in insts}
    assert {"America/New_York", "Asia/Kolkata"} <= zones and any(z.startswith("Europe/") for z in zones)
    for inst in insts:
        assert isinstance(inst.tz, ZoneInfo) and inst.daily_token_budget > 0 and inst.model


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("institutions:\n  - {id: a1, name: A, timezone: Mars/Olympus}\n", "not an IANA time zone"),
    ("institutions:\n  - {id: Bad-Id, name: A, timezone: UTC}\n", "field 'id' must match"),
    ("institutions:\n  - {id: aa, timezone: UTC}\n", "field 'name' is required"),
    ("institutions:\n  - {id: aa, name: A, timezone: UTC, colour: red}\n", "unknown field"),
    ("institutions:\n  - {id: aa, name: A, timezone: UTC}\n  - {id: aa, name: B, timezone: UTC}\n", "duplicate id"),
])
def test_bad_config_is_named(tmp_path, yaml_text, message):
    path = tmp_path / "institutions.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_institutions(path)


@pytest.mark.parametrize(("fields", "message"), [
    ("alert_emails: ops@example.org", "must be a list of e-mail addresses"),
    ("alert_emails: [ops@example.org, not-an-address]", "invalid address"),
    ("release_deadline: '8am'", "local time HH:MM after the 06:00 publish run"),
    ("release_deadline: '05:30'", "after the 06:00 publish run"),
    ("review_alert_share: 0", r"review_alert_share' must be a number in \(0, 1\]"),
    ("review_alert_share: 1.5", "review_alert_share"),
    ("day_window_days: -1", "day_window_days' must be a whole number of days >= 0"),
    ("day_window_days: 1.5", "day_window_days"),
    ("queue: 'two words'", "field 'queue' must be a Celery queue name"),
    ("queue: 'a,b'", "field 'queue' must be a Celery queue name"),
    ("queue: 3", "field 'queue'"),
])
def test_bad_alert_fields_are_named(tmp_path, fields, message):
    path = tmp_path / "institutions.yaml"
    path.write_text(f"institutions:\n  - id: aa\n    name: A\n    timezone: UTC\n    {fields}\n")
    with pytest.raises(ConfigError, match=message):
        load_institutions(path)


def test_alert_fields_have_defaults_and_sample_recipients(tmp_path):
    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC}\n")
    (inst,) = load_institutions(path)
    assert inst.alert_emails == () and inst.release_deadline == "08:00" and inst.review_alert_share == 0.2
    assert all(i.alert_emails for i in load_institutions())


def test_the_schedule_is_defined_once_and_gives_the_dags_crons():
    assert STAGES == ("ingest", "prepare", "grade", "publish") and PUBLISH_AT == "06:00"
    assert [s.cron for s in SCHEDULES.values()] == ["*/15 8-17 * * *", "0 18 * * *", "0 20 * * *", "0 6 * * *"]
    assert SCHEDULES["ingest"].times == ("08:00", "17:45") and SCHEDULES["grade"].times == ("20:00",)


def test_the_tenants_file_is_read_from_the_environment_at_each_call(tmp_path, monkeypatch):
    """A process that points GRADEFLOW_INSTITUTIONS at another file after importing the config (the demo lowers
    one institution's review_alert_share that way, after the stack's environment imported it) is obeyed."""
    import yaml

    from gradeflow.core import config

    monkeypatch.delenv("GRADEFLOW_INSTITUTIONS", raising=False)
    original = config.load_institutions()
    data = yaml.safe_load(config.INSTITUTIONS_FILE.read_text())
    data["institutions"][0]["review_alert_share"] = 0.0001
    edited = tmp_path / "institutions.yaml"
    edited.write_text(yaml.safe_dump(data))
    first = data["institutions"][0]["id"]
    monkeypatch.setenv("GRADEFLOW_INSTITUTIONS", str(edited))
    assert config.get_institution(first).review_alert_share == 0.0001
    monkeypatch.delenv("GRADEFLOW_INSTITUTIONS")
    before = next(i for i in original if i.id == first)
    assert config.get_institution(first).review_alert_share == before.review_alert_share


def test_the_celery_queue_is_optional_and_kept(tmp_path):
    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC, queue: gradeflow.aa}\n"
                    "  - {id: bb, name: B, timezone: UTC}\n")
    assert [i.queue for i in load_institutions(path)] == ["gradeflow.aa", None]
