"""Intake: the file contract (exams, submissions), readers, and the ingest sweep into PostgreSQL.

May import: gradeflow.core, gradeflow.lifecycle.
"""
