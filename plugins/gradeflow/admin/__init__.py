"""Admin: reruns (regrade a day, question or student) with an audit trail, and `evaluate` (a model against
human graders before trusting it).

May import: gradeflow.core, gradeflow.lifecycle, gradeflow.intake, gradeflow.grading, gradeflow.release.
"""
