"""The stage DAGs' timetable: a cron in the institution's zone whose first run is the next slot, never a past one.

Airflow 3.3's `CronTriggerTimetable` with catchup off gives a new DAG (or a DAG whose runs were deleted) a run
for the latest *past* slot, whatever `run_immediately` says, because the DAG's `start_date` is an `earliest`
restriction: a new institution, or a fresh Airflow home, got a publish run hours after its deadline at once.
`LocalCronTimetable` changes only that first run: with no earlier scheduled run, it is the next slot from now.
Once the DAG has a scheduled run, Airflow's own rule applies unchanged: after a scheduler outage the latest
slot missed runs when the scheduler returns (catchup off: one run, not every missed slot).

A slot that passed less than `FIRST_RUN_GRACE` ago still counts as due for the first run: the dag-processor
recomputes a run-less DAG's next run at every parse, and a parse a few seconds after the slot, before the
scheduler created the run, must not skip it.

The class is registered with Airflow by `plugins/gradeflow_plugin.py` (an `AirflowPlugin`'s `timetables`): the
scheduler and api-server deserialize DAGs only with registered custom timetables.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

FIRST_RUN_GRACE = datetime.timedelta(minutes=2)


class LocalCronTimetable(CronTriggerTimetable):
    """`CronTriggerTimetable(cron, timezone=...)` whose first run is the next slot; `label` is shown in the UI."""

    def __init__(self, cron: str, *, timezone: Any, label: str = "") -> None:
        super().__init__(cron, timezone=timezone)
        zone = getattr(self._timezone, "name", str(self._timezone))
        self.label = label or f"{self._expression} {zone}"
        # The DAG list shows `summary` beside a UTC "Next Run": the zone must be in it.
        self._summary = f"{self._expression} ({zone})"
        self.description = f"{self.label}: {self.description}" if self.description else self.label
        self._checked = False

    def validate(self) -> None:
        """Airflow checks every DAG's timetable (the cron parsed again) as it bags the DAG: one check per instance.

        The DAG file shares one timetable per (cron, zone) between the DAGs that use it (1,200 DAGs, about 40
        timetables at 300 institutions) and the expression never changes."""
        if not self._checked:
            super().validate()
            self._checked = True

    @property
    def summary(self) -> str:
        return self._summary

    @property
    def expression(self) -> str:
        """The cron expression (as the SDK's CronTriggerTimetable names it)."""
        return self._expression

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> LocalCronTimetable:
        from airflow._shared.timezones.timezone import parse_timezone

        return cls(data["expression"], timezone=parse_timezone(data["timezone"]), label=data.get("label", ""))

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "label": self.label}

    def next_dagrun_info(self, *, last_automated_data_interval: DataInterval | None,
                         restriction: TimeRestriction) -> DagRunInfo | None:
        from airflow._shared.timezones.timezone import utcnow

        return self.next_run_from(utcnow(), last_automated_data_interval, restriction)

    def next_run_from(self, now: datetime.datetime, last: DataInterval | None,
                      restriction: TimeRestriction) -> DagRunInfo | None:
        """The next run as the scheduler sees it at `now` (`next_dagrun_info` passes the clock)."""
        from airflow._shared.timezones.timezone import coerce_datetime

        now = coerce_datetime(now)
        if last is not None or restriction.catchup:
            # Airflow's rule: the next slot after the last run, or (catchup off) the latest slot passed.
            if last is not None:
                candidates = [self._get_next(last.end)]
            else:
                candidates = [self._align_to_next(restriction.earliest) if restriction.earliest else
                              self._align_to_next(now)]
            if not restriction.catchup:
                candidates.append(self._align_to_prev(now))
            when = max(candidates)
        else:
            # The first run: the next slot (or one that passed within the grace), never an older past slot.
            when = self._align_to_next(now - FIRST_RUN_GRACE)
            if restriction.earliest is not None:
                when = max(when, self._align_to_next(restriction.earliest))
        if restriction.latest is not None and restriction.latest < when:
            return None
        return DagRunInfo.interval(coerce_datetime(when - self._interval), when)
