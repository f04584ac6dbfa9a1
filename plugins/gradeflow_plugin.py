"""Registers GradeFlow's timetable with Airflow (the scheduler and api-server deserialize only registered ones)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gradeflow.airflow.timetables import LocalCronTimetable


class GradeFlowPlugin(AirflowPlugin):
    name = "gradeflow"
    timetables = [LocalCronTimetable]
