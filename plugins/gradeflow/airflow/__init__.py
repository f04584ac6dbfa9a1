"""The Airflow side: task callables, the deferrable grading operator, DAG policy and alert notifiers.

May import: every other sub-package (this is the top of the import graph; the DAG files import only this).
"""
