"""The shared core: typed configuration, PostgreSQL access and the SQL loader, S3 storage.

May import: nothing else of gradeflow (every other sub-package imports core).
"""
