"""GradeFlow: overnight exam grading on Airflow (ingest, rules, Batch API, validation, publish)."""
