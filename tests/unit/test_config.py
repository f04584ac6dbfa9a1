from zoneinfo import ZoneInfo

import pytest

from gradeflow.config import ConfigError, load_institutions


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
