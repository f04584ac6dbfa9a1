"""gradeflow__admin_rerun: regrade and republish a day, a question or a student, from a validated form.

Wiring only: the reset lives in gradeflow.rerun; the stage DAGs do the regrading.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, TriggerRule, task

from gradeflow import tasks
from gradeflow.config import load_institutions
from gradeflow.dag_defaults import DEFAULT_ARGS, tags
from gradeflow.rerun import DAY_PATTERN, SCOPES, STAGES

DOC = """
# Admin rerun

Regrades and republishes as a **new version**; the old grades stay in the database, superseded,
and every request is written to `audit_log` (who, when, why, what it changed).

| param | meaning |
|---|---|
| institution | whose exam day |
| exam_day | `YYYY-MM-DD`, the institution's local exam day |
| stage | `prepare`: regrade the scope (supersede its grades, new version), then grade and publish; \
`grade`: resume grading (submit, collect, retry what is pending) and publish; `publish`: republish only |
| scope | `day` (every answer), `question` (`scope_value` = `question_id` or `exam_id/question_id`), \
`student` (`scope_value` = `student_id`) |
| reason | why (kept in the audit log) |
| dry_run | `true` (default): only count what would change and write the audit line |

Example: `{"institution": "northfield", "exam_day": "2026-11-23", "stage": "prepare", "scope": "question",
"scope_value": "bio-101/q4", "reason": "rubric for q4 was corrected by the examiner", "dry_run": false}`

A regrade is refused while a batch of that day may still deliver (wait for `<id>__grade` to collect
it); work written but not yet sent is withdrawn, so nothing is paid for twice. A scope that matches
no answer (a mistyped question or student id, a day without answers) is refused: nothing changes
and the version stays. Every request, done, dry run or refused, is in `audit_log` with who and why.
Clearing `reset_for_rerun` is safe: each run resets once.
"""

INSTITUTIONS = [inst.id for inst in load_institutions()]

with DAG(
    dag_id="gradeflow__admin_rerun",
    description="Regrade / republish one exam day as a new version, with an audit trail",
    doc_md=DOC,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=14),
    default_args={**DEFAULT_ARGS, "retries": 0},
    tags=tags("admin"),
    params={
        "institution": Param(INSTITUTIONS[0], type="string", enum=INSTITUTIONS, title="Institution"),
        "exam_day": Param("", type="string", pattern=DAY_PATTERN, title="Exam day (YYYY-MM-DD)"),
        "stage": Param("prepare", type="string", enum=list(STAGES), title="Start at stage"),
        "scope": Param("day", type="string", enum=list(SCOPES), title="Scope"),
        "scope_value": Param("", type="string", maxLength=128, title="Question or student id",
                             description="Needed for scope question or student."),
        "reason": Param("", type="string", minLength=10, maxLength=500, title="Reason"),
        "dry_run": Param(True, type="boolean", title="Dry run"),
    },
) as dag:
    reset = task(task_id="reset_for_rerun")(tasks.reset_for_rerun)()

    @task.branch(task_id="choose_start")
    def choose_start(result: dict) -> list[str]:
        """Start at the chosen stage and run every later one; a dry run triggers nothing."""
        if result["dry_run"]:
            return []
        return [f"trigger_{stage}" for stage in STAGES[STAGES.index(result["stage"]):]]

    triggers = [
        TriggerDagRunOperator(
            task_id=f"trigger_{stage}",
            trigger_dag_id=f"{{{{ params.institution }}}}__{stage}",
            conf={"exam_day": "{{ params.exam_day }}"},
            wait_for_completion=True,
            deferrable=True,
            poke_interval=30,
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        )
        for stage in STAGES
    ]
    start = choose_start(reset)
    start >> triggers
    triggers[0] >> triggers[1] >> triggers[2]
