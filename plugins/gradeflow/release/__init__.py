"""Release: the Great Expectations gate, release tables, exports, agreement and the daily report.

May import: gradeflow.core, gradeflow.lifecycle.
"""
