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
    ("max_submission_bytes: 0", "max_submission_bytes' must be a whole number of bytes from 1 to"),
    ("max_submission_bytes: 1.5e9", "max_submission_bytes"),
    ("max_submission_bytes: '1 GB'", "max_submission_bytes"),
    ("max_submission_bytes: 20000000000", "max_submission_bytes"),
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
    assert inst.max_submission_bytes == 1024 ** 3
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


@pytest.mark.parametrize(("fields", "message"), [
    ("audit_rate: 1.5", r"institutions\[0\]: field 'audit_rate' must be a number from 0 to 1"),
    ("audit_rate: -0.1", "audit_rate"),
    ("audit_rate: 'five percent'", "audit_rate"),
    ("audit_rate: true", "audit_rate"),
    ("audit_min_per_question: -1", "audit_min_per_question' must be a whole number >= 0"),
    ("audit_min_per_question: 2.5", "audit_min_per_question"),
    ("tolerance_points: -0.5", "tolerance_points' must be a number of points >= 0"),
    ("tolerance_points: .nan", "tolerance_points"),
])
def test_bad_audit_fields_are_named(tmp_path, fields, message):
    path = tmp_path / "institutions.yaml"
    path.write_text(f"institutions:\n  - id: aa\n    name: A\n    timezone: UTC\n    {fields}\n")
    with pytest.raises(ConfigError, match=message):
        load_institutions(path)


@pytest.mark.parametrize(("fields", "message"), [
    ("target_accuracy: 1", r"target_accuracy' must be a share in \(0, 1\)"),
    ("target_accuracy: 95", "target_accuracy"),
    ("target_accuracy: true", "target_accuracy"),
    ("tolerance_points: -0.5", "tolerance_points' must be a number of points >= 0"),
    ("tolerance_points: half", "tolerance_points"),
    ("expected_output_tokens: 0", "expected_output_tokens' must be a whole number > 0"),
    ("expected_output_tokens: 80.5", "expected_output_tokens"),
])
def test_bad_calibration_fields_are_named(tmp_path, fields, message):
    path = tmp_path / "institutions.yaml"
    path.write_text(f"institutions:\n  - id: aa\n    name: A\n    timezone: UTC\n    {fields}\n")
    with pytest.raises(ConfigError, match=message):
        load_institutions(path)


def test_audit_fields_have_defaults_and_take_values(tmp_path):
    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC}\n"
                    "  - {id: bb, name: B, timezone: UTC, audit_rate: 0, audit_min_per_question: 0, "
                    "tolerance_points: 1}\n")
    first, second = load_institutions(path)
    assert (first.audit_rate, first.audit_min_per_question, first.tolerance_points) == (0.05, 2, 0.5)
    assert (second.audit_rate, second.audit_min_per_question, second.tolerance_points) == (0.0, 0, 1.0)


def test_calibration_fields_default_to_half_a_point_and_95_percent(tmp_path):
    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC}\n  - {id: bb, name: B, timezone: UTC, "
                    "target_accuracy: 0.9, tolerance_points: 1}\n")
    first, second = load_institutions(path)
    assert (first.tolerance_points, first.target_accuracy) == (0.5, 0.95)
    assert (second.tolerance_points, second.target_accuracy) == (1.0, 0.9)


@pytest.mark.parametrize(("fields", "message"), [
    ("student_release: later", "'student_release' must be 'auto', 'after_faculty_approval' or \"at HH:MM\""),
    ("student_release: true", "'student_release' must be"),
    ("student_release: 'at 5:30'", "'at HH:MM' needs a local time after the 06:00 publish run"),
    ("student_release: 'at 05:30'", "after the 06:00 publish run"),
    ("{student_release: after_faculty_approval, faculty_approval_hours: 0}", r"faculty_approval_hours' must be a "
                                                                             r"number of hours in \(0, 22\]"),
    ("{student_release: after_faculty_approval, faculty_approval_hours: 30}", "before the next morning's publish"),
    ("{student_release: auto, faculty_approval_hours: 4}", "only for student_release 'after_faculty_approval'"),
])
def test_bad_student_release_is_named(tmp_path, fields, message):
    path = tmp_path / "institutions.yaml"
    if fields.startswith("{"):
        fields = ", ".join(f"{k}: {v}" for k, v in (p.split(": ") for p in fields[1:-1].split(", ")))
        body = "\n    ".join(fields.split(", "))
    else:
        body = fields
    path.write_text(f"institutions:\n  - id: aa\n    name: A\n    timezone: UTC\n    {body}\n")
    with pytest.raises(ConfigError, match=message) as raised:
        load_institutions(path)
    assert "institutions[0]" in str(raised.value)


def test_student_release_defaults_to_auto_and_at_gives_the_local_time_the_morning_after(tmp_path):
    from datetime import date

    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC}\n"
                    "  - {id: bb, name: B, timezone: Asia/Kolkata, student_release: at 09:30}\n"
                    "  - {id: cc, name: C, timezone: UTC, student_release: after_faculty_approval,"
                    " faculty_approval_hours: 2.5}\n")
    aa, bb, cc = load_institutions(path)
    assert aa.student_release == "auto" and not aa.needs_faculty_approval and aa.student_release_at is None
    assert aa.student_release_time(date(2026, 11, 23)) is None
    assert bb.student_release_at == "09:30"
    assert bb.student_release_time(date(2026, 11, 23)).isoformat() == "2026-11-24T09:30:00+05:30"
    assert cc.needs_faculty_approval and cc.faculty_approval_hours == 2.5


def test_the_celery_queue_is_optional_and_kept(tmp_path):
    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC, queue: gradeflow.aa}\n"
                    "  - {id: bb, name: B, timezone: UTC}\n")
    assert [i.queue for i in load_institutions(path)] == ["gradeflow.aa", None]
