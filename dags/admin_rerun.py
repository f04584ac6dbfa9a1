"""gradeflow__admin_rerun: regrade and republish a day, a question or a student, from a validated form.

Wiring only: the reset lives in gradeflow.admin.rerun; the stage DAGs do the regrading.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, TriggerRule, task

from gradeflow.admin.rerun import SCOPES, STAGES
from gradeflow.airflow import tasks
from gradeflow.airflow.policy import DAG_POLICY, DAY_FORMAT, DEFAULT_ARGS, tags
from gradeflow.core.config import load_institutions

DOC = """
# Admin rerun

Regrades and republishes as a **new version**; the old grades stay in the database, superseded,
and every request is written to `audit_log` (who, when, why, what it changed).

| param | meaning |
|---|---|
| institution | whose exam day |
| exam_day | `YYYY-MM-DD`, the institution's local exam day; may be left empty only for a dry run \
(then: yesterday in the institution's time zone) |
| stage | `prepare`: regrade the scope (supersede its grades, new version), then grade and publish; \
`grade`: resume grading (submit, collect, retry what is pending) and publish; `publish`: republish only |
| scope | `day` (every answer), `question` (`scope_value` = `question_id` or `exam_id/question_id`), \
`student` (`scope_value` = `student_id`) |
| scope_value | required when scope is `question` or `student`, ignored for `day` |
| reason | why, at least 10 characters (kept in the audit log); may be left empty only for a dry run |
| dry_run | `true` (default): only count what would change and write the audit line |

Triggering with the defaults is a harmless dry run of yesterday for the first institution. Fields that
depend on others (`scope_value`, and `exam_day`/`reason` for a real run) are checked by the first task,
which fails at once with a message naming the field.

Example: `{"institution": "northfield", "exam_day": "2026-11-23", "stage": "prepare", "scope": "question",
"scope_value": "bio-101/q4", "reason": "rubric for q4 was corrected by the examiner", "dry_run": false}`

A regrade is refused while a batch of that day may still deliver (wait for `<id>__grade` to collect
it); work written but not yet sent is withdrawn, so nothing is paid for twice. A scope that matches
no answer (a mistyped question or student id, a day without answers) is refused: nothing changes
and the version stays. A real run is refused at once, before anything changes, when a stage DAG it
would trigger is paused (unpause it, or pick a later stage). Every request, done, dry run or refused,
is in `audit_log` with who and why. Clearing `reset_for_rerun` is safe: each run resets once.

**Pause and alerts**: created unpaused; manual only (no schedule, no catchup). A failure e-mails the
chosen institution's `alert_emails`.
"""

INSTITUTIONS = [inst.id for inst in load_institutions()]

with DAG(
    dag_id="gradeflow__admin_rerun",
    description="Regrade / republish one exam day as a new version, with an audit trail",
    doc_md=DOC,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    **DAG_POLICY,
    dagrun_timeout=timedelta(hours=14),
    default_args={**DEFAULT_ARGS, "retries": 0},
    tags=tags("admin"),
    params={
        "institution": Param(INSTITUTIONS[0], type="string", enum=INSTITUTIONS, title="Institution",
                             description="Whose exam day: an institution id from include/institutions.yaml."),
        "exam_day": Param(None, type=["null", "string"], pattern=DAY_FORMAT, title="Exam day (YYYY-MM-DD)",
                          description="The institution's local exam day, YYYY-MM-DD, e.g. 2026-11-23. Required "
                                      "for a real run; empty in a dry run means yesterday (local)."),
        "stage": Param("prepare", type="string", enum=list(STAGES), title="Start at stage",
                       description="prepare: regrade the scope, then grade and publish; grade: resume grading "
                                   "and publish; publish: republish only."),
        "scope": Param("day", type="string", enum=list(SCOPES), title="Scope",
                       description="day: every answer; question: one question (set scope_value); student: one "
                                   "student (set scope_value)."),
        "scope_value": Param(None, type=["null", "string"], maxLength=128, title="Question or student id",
                             description="Required when scope is question (question_id or exam_id/question_id, "
                                         "e.g. bio-101/q4) or student (student_id); leave empty for scope day."),
        "reason": Param(None, type=["null", "string"], minLength=10, maxLength=500, title="Reason",
                        description="Why, in 10 to 500 characters (kept in the audit log). Required for a real "
                                    "run; may be left empty for a dry run."),
        "dry_run": Param(True, type="boolean", title="Dry run",
                         description="On (default): only count what would change and write the audit line. "
                                     "Off: regrade / republish for real."),
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
            fail_when_dag_is_paused=True,
            poke_interval=30,
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        )
        for stage in STAGES
    ]
    start = choose_start(reset)
    start >> triggers
    triggers[0] >> triggers[1] >> triggers[2]
