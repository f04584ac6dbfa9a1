"""Grading: rule grading, Batch API request lines, prepare (18:00) and the grade night (20:00).

May import: gradeflow.core, gradeflow.lifecycle.
"""
