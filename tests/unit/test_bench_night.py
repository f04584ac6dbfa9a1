"""`make bench-night` writes its figures under its own key of bench-output/bench.json, keeping the rest."""

import json

from devstack import bench_night


def test_the_night_is_merged_under_its_own_key(tmp_path):
    output = tmp_path / "bench.json"
    output.write_text(json.dumps({"summary": {"answers": 10}, "stages": [1, 2], "night": {"old": True}}))
    bench_night.merge(output, {"institutions": 10, "executors": {"LocalExecutor": {"total_seconds": 1.0}}})
    data = json.loads(output.read_text())
    assert data["summary"] == {"answers": 10} and data["stages"] == [1, 2]
    assert data["night"] == {"institutions": 10, "executors": {"LocalExecutor": {"total_seconds": 1.0}}}
    assert json.loads((tmp_path / "bench-night.json").read_text()) == data["night"]
    fresh = tmp_path / "new" / "bench.json"
    bench_night.merge(fresh, {"institutions": 3})
    assert json.loads(fresh.read_text()) == {"night": {"institutions": 3}}


def test_spread_reports_median_p95_and_max():
    assert bench_night._spread([]) == {"n": 0}
    assert bench_night._spread([float(x) for x in range(1, 21)]) == {"n": 20, "median": 10.5, "p95": 20.0,
                                                                     "max": 20.0}
