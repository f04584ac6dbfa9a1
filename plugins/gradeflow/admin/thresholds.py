"""The threshold table of an institution from its database: `python -m gradeflow.admin.thresholds --institution X`.

Which `min_confidence` buys which accuracy at which review workload, from every human score of a model grade
the institution has (reviews of routed answers, audits) over a window of exam days, and the recommendation for
its `target_accuracy` (gradeflow.release.calibration; docs/review-round-trip.md, "Choosing min_confidence"):

    python -m gradeflow.admin.thresholds --institution northfield                # the 28 exam days up to today
    python -m gradeflow.admin.thresholds --institution northfield --days 90 --until 2026-11-23 --json t.json
    make thresholds INST=northfield

Connects as the institution's own login (the Airflow connection gradeflow_db_<id>), so it reads only that
institution's rows. Exit 2 on a bad argument (an unknown institution, a bad date), with one line saying which.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from gradeflow.core import db
from gradeflow.core.config import ConfigError, get_institution
from gradeflow.release import agreement, calibration


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Print the institution's threshold table (and per-criterion agreement of the window); exit 2 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--institution", required=True, help="the institution's id (include/institutions.yaml)")
    parser.add_argument("--until", type=_day, help="the last exam day (default: today in the institution's zone)")
    parser.add_argument("--days", type=int, default=calibration.DEFAULT_WINDOW_DAYS,
                        help="exam days in the window, ending at --until (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    try:
        inst = get_institution(args.institution)
    except ConfigError as exc:
        print(f"--institution: {exc}", file=sys.stderr)
        return 2
    if args.days < 1:
        print(f"--days: must be at least 1, got {args.days}", file=sys.stderr)
        return 2
    last = args.until or datetime.now(inst.tz).date()
    first = last - timedelta(days=args.days - 1)
    with db.connect(institution=inst.id) as conn:
        rows = calibration.institution_rows(conn, inst, first, last)
        table = calibration.institution_table(conn, inst, first, last, rows)
    per_criterion = agreement.criteria_report([r for r in rows if r["model_decisions"] and r["human_decisions"]])
    print(f"{inst.id}: exam days {first} to {last}; {table['population']} model-graded piece(s) of work, "
          f"{table['pairs']} with a human score")
    print(calibration.render(table, inst.min_confidence))
    for c in per_criterion:
        print(f"criterion {c['question_id']}/{c['criterion']}: n={c['n']}, same decision {c['agreement']:.1%} "
              f"[{c['ci_low']:.1%}, {c['ci_high']:.1%}], kappa {c['kappa']}")
    if args.json:
        args.json.write_text(json.dumps({**table, "per_criterion": per_criterion}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
