"""GradeFlow: overnight exam grading on Airflow (ingest, rules, Batch API, validation, publish).

One sub-package per stage over a small core (docs/architecture.md has the map and the import rules):
core -> lifecycle -> intake, grading, review, release, admin -> airflow. Imported once, as `gradeflow`
(plugins/.airflowignore keeps Airflow's plugin loader from importing its modules a second time by bare name).
"""
