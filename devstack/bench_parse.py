"""Benchmark: how long Airflow takes to parse dags/institution_dags.py with many institutions.

Generates an institutions file of N institutions (default 300, so 1,200 DAGs), points
GRADEFLOW_INSTITUTIONS at it and, in a fresh Python process per run, parses the DAG file the way
the DAG processor does (`DagBag` on that one file). Airflow itself is imported before the clock
starts (the DAG processor has it loaded); the clock covers executing the file and building its
DAGs. Prints each run and the medians of wall time and of CPU time (the CPU time is the steadier
figure on a shared machine: it does not count time spent waiting for a core).

    python -m devstack.bench_parse [--institutions 300] [--runs 5] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.stack import PROJECT_ROOT

DAG_FILE = PROJECT_ROOT / "dags" / "institution_dags.py"
ZONES = ("America/New_York", "Asia/Kolkata", "Europe/Berlin", "America/Sao_Paulo", "Australia/Sydney",
         "Africa/Lagos", "Asia/Tokyo", "Europe/London", "America/Los_Angeles", "Pacific/Auckland")

_CHILD = r"""
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk  # noqa: F401 - loaded in the DAG processor before any file is parsed
profile = os.environ.get("BENCH_PROFILE")
if profile:
    import cProfile
    prof = cProfile.Profile(); prof.enable()
started, cpu = time.perf_counter(), time.process_time()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
if profile:
    prof.disable(); prof.dump_stats(profile)
errors = {k: str(v)[:500] for k, v in bag.import_errors.items()}
print(json.dumps({"seconds": seconds, "cpu": cpu, "dags": len(bag.dags), "errors": errors}))
"""


def write_institutions(path: Path, count: int, alerts: bool = True) -> Path:
    """A valid institutions file with `count` tenants across several time zones."""
    lines = ["institutions:"]
    for n in range(count):
        lines += [f"  - id: inst_{n:04d}", f"    name: Institution {n}", f"    timezone: {ZONES[n % len(ZONES)]}"]
        lines += [f"    alert_emails: [exams-{n}@example.org]"] if alerts else []
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_once(institutions: Path, profile: str | None = None, root: Path = PROJECT_ROOT) -> dict:
    """Parse the DAG file in a fresh interpreter; return seconds, DAG count and import errors."""
    env = {**os.environ, "GRADEFLOW_INSTITUTIONS": str(institutions),
           "PYTHONPATH": os.pathsep.join([str(root / "plugins"), str(root)]),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600"}  # a loaded machine must not turn into a timeout
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gradeflow-bench-parse-"))
    if profile:
        env["BENCH_PROFILE"] = profile
    out = subprocess.run([sys.executable, "-c", _CHILD, str(root / "dags" / DAG_FILE.name)], env=env,
                         capture_output=True, text=True, check=False, cwd=root)
    if out.returncode:
        raise SystemExit(f"parsing failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--institutions", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of one more run to this file")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="another checkout to measure (e.g. an older commit unpacked with git archive)")
    parser.add_argument("--no-alert-fields", action="store_true", help="for checkouts older than alert_emails")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gradeflow-bench-parse-") as tmp:
        path = write_institutions(Path(tmp) / "institutions.yaml", args.institutions, not args.no_alert_fields)
        times, cpus = [], []
        for run in range(1, args.runs + 1):
            result = parse_once(path, root=args.root)
            if result["errors"]:
                raise SystemExit(f"import errors: {result['errors']}")
            times.append(result["seconds"])
            cpus.append(result["cpu"])
            print(f"run {run}: {result['dags']} DAGs parsed in {result['seconds']:.2f}s "
                  f"({result['cpu']:.2f}s CPU)", flush=True)
        if args.profile:
            parse_once(path, args.profile, root=args.root)
            print(f"profile written to {args.profile}")
    load = os.getloadavg()[0]
    print(f"DAG parsing, {args.institutions} institutions ({4 * args.institutions} DAGs): median "
          f"{statistics.median(times):.2f}s wall, {statistics.median(cpus):.2f}s CPU over {len(times)} runs "
          f"(wall min {min(times):.2f}s, max {max(times):.2f}s; load average {load:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
