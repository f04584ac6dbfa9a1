"""Human review: review items, blind packets out, reviewers' files in.

May import: gradeflow.core, gradeflow.lifecycle, gradeflow.intake (file contract).
"""
