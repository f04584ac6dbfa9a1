"""DagBag integrity and policy: every DAG imports, documents itself and follows the house defaults."""

import copy
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gradeflow.airflow.policy import OWNER
from gradeflow.core.config import STAGES, load_institutions


@pytest.fixture(scope="module")
def dagbag(project_root, tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(project_root / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_four_dags_per_institution_plus_admin(dagbag):
    insts = load_institutions()
    expected = {f"{i.id}__{s}" for i in insts for s in STAGES} | {"gradeflow__admin_rerun"}
    assert set(dagbag.dags) == expected


def test_every_dag_follows_policy(dagbag):
    no_retry = {"validate_grades"}  # retrying cannot help: the gate gives the same verdict on the same grades
    assert no_retry <= {t.task_id for dag in dagbag.dags.values() for t in dag.tasks}  # no stale exemption
    for dag in dagbag.dags.values():
        assert dag.doc_md and len(dag.doc_md) > 80, dag.dag_id
        assert dag.description, dag.dag_id
        assert "gradeflow" in dag.tags and any(t.startswith("stage:") for t in dag.tags), dag.dag_id
        assert dag.max_active_runs == 1 and dag.dagrun_timeout is not None, dag.dag_id
        assert dag.catchup is False, dag.dag_id
        assert dag.is_paused_upon_creation is False, dag.dag_id  # the documented pause policy
        assert dag.on_failure_callback, dag.dag_id  # a failed run e-mails the institution
        for task in dag.tasks:
            assert task.owner == OWNER, (dag.dag_id, task.task_id)
            assert task.execution_timeout is not None, (dag.dag_id, task.task_id)
            assert task.on_failure_callback, (dag.dag_id, task.task_id)
            if task.task_id not in no_retry and dag.dag_id != "gradeflow__admin_rerun":
                assert task.retries >= 1, (dag.dag_id, task.task_id)


def test_institution_tag_matches_dag(dagbag):
    for inst in load_institutions():
        for stage in STAGES:
            dag = dagbag.dags[f"{inst.id}__{stage}"]
            assert f"institution:{inst.id}" in dag.tags and f"stage:{stage}" in dag.tags


def _next_runs(dag, after: datetime, count: int) -> list[datetime]:
    from airflow.serialization.serialized_objects import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = coerce_to_core_timetable(dag.timetable)  # what the scheduler computes with
    restriction = TimeRestriction(earliest=after, latest=None, catchup=True)
    runs, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        runs.append(info.run_after)
        last = DataInterval(info.run_after, info.run_after)
    return runs


@pytest.mark.parametrize(("stage", "hour"), [("prepare", 18), ("grade", 20), ("publish", 6)])
def test_schedules_stay_local_across_dst(dagbag, stage, hour):
    """America/New_York leaves DST on 2026-11-01: 18:00 local is 22:00 UTC before and 23:00 UTC after."""
    ny = dagbag.dags[f"northfield__{stage}"]
    runs = _next_runs(ny, datetime(2026, 10, 30, 12, tzinfo=ZoneInfo("UTC")), 4)
    local = [r.astimezone(ZoneInfo("America/New_York")) for r in runs]
    assert [t.hour for t in local] == [hour] * 4
    assert [t.minute for t in local] == [0] * 4
    utc_hours = {r.astimezone(ZoneInfo("UTC")).hour for r in runs}
    assert len(utc_hours) == 2, "the UTC hour must move when New York leaves daylight saving"
    assert all(b - a in (timedelta(hours=24), timedelta(hours=25)) for a, b in zip(runs, runs[1:], strict=False))


def test_kolkata_has_no_dst(dagbag):
    runs = _next_runs(dagbag.dags["lakeshore__prepare"], datetime(2026, 3, 27, tzinfo=ZoneInfo("UTC")), 5)
    assert {r.astimezone(ZoneInfo("UTC")).strftime("%H:%M") for r in runs} == {"12:30"}


def test_berlin_spring_forward(dagbag):
    runs = _next_runs(dagbag.dags["rheinwald__publish"], datetime(2026, 3, 27, tzinfo=ZoneInfo("UTC")), 4)
    assert [r.astimezone(ZoneInfo("Europe/Berlin")).hour for r in runs] == [6] * 4
    assert {r.astimezone(ZoneInfo("UTC")).hour for r in runs} == {5, 4}


def test_ingest_runs_every_15_minutes_in_the_local_day(dagbag):
    runs = _next_runs(dagbag.dags["lakeshore__ingest"], datetime(2026, 11, 23, 0, tzinfo=ZoneInfo("UTC")), 41)
    local = [r.astimezone(ZoneInfo("Asia/Kolkata")) for r in runs]
    assert local[0].strftime("%H:%M") == "08:00" and local[39].strftime("%H:%M") == "17:45"
    assert local[40].strftime("%d %H:%M") == "24 08:00"


def test_exam_day_comes_from_logical_date_in_local_time():
    from types import SimpleNamespace

    from gradeflow.airflow.tasks import exam_day_for
    from gradeflow.core.config import get_institution

    ny = get_institution("northfield")
    # 06:00 New York on 24 Nov is 11:00 UTC: publish works on the 23rd.
    run = SimpleNamespace(logical_date=datetime(2026, 11, 24, 11, tzinfo=ZoneInfo("UTC")), run_after=None)
    assert str(exam_day_for({"dag_run": run, "params": {}}, ny)) == "2026-11-23"
    # 18:00 New York on 23 Nov is 23:00 UTC on the 23rd; 20:00 is 01:00 UTC on the 24th.
    run = SimpleNamespace(logical_date=datetime(2026, 11, 24, 1, tzinfo=ZoneInfo("UTC")), run_after=None)
    assert str(exam_day_for({"dag_run": run, "params": {}}, ny)) == "2026-11-23"
    manual = SimpleNamespace(logical_date=None, run_after=datetime(2026, 11, 25, 3, tzinfo=ZoneInfo("UTC")))
    assert str(exam_day_for({"dag_run": manual, "params": {"exam_day": "2026-11-20"}}, ny)) == "2026-11-20"
    assert str(exam_day_for({"dag_run": manual, "params": {"exam_day": ""}}, ny)) == "2026-11-24"


@pytest.mark.parametrize(("local", "day"), [
    ("2026-11-23 18:00", "2026-11-23"),  # the scheduled prepare
    ("2026-11-23 20:00", "2026-11-23"),  # the scheduled grade
    ("2026-11-24 06:00", "2026-11-23"),  # the scheduled publish, the morning after
    ("2026-11-23 23:30", "2026-11-23"),  # a same-evening manual chain
    ("2026-11-24 00:30", "2026-11-23"),  # ... that went on past local midnight
    ("2026-11-24 17:59", "2026-11-23"),  # before the cut-off: the day before
])
def test_one_rule_for_an_empty_exam_day_in_every_stage(dagbag, local, day):
    """prepare, grade and publish triggered with an empty form at the same moment work on the same day: the
    last day whose 18:00 local cut-off has passed (before, prepare and grade took today, publish yesterday)."""
    from types import SimpleNamespace

    from gradeflow.airflow.tasks import exam_day_for
    from gradeflow.core.config import get_institution

    for inst_id in ("lakeshore", "rheinwald", "northfield"):
        inst = get_institution(inst_id)
        when = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(inst.timezone))
        manual = SimpleNamespace(logical_date=None, run_after=when.astimezone(ZoneInfo("UTC")))
        for stage in ("prepare", "grade", "publish"):
            assert "exam_day" in dagbag.dags[f"{inst_id}__{stage}"].params
            assert str(exam_day_for({"dag_run": manual, "params": {"exam_day": None}}, inst)) == day, (inst_id, stage)
    # The rule is stated where the operator sees it: the form's description and each DAG's docs.
    for stage in ("prepare", "grade", "publish"):
        dag = dagbag.dags[f"lakeshore__{stage}"]
        assert "18:00 cut-off has passed" in dag.params.get_param("exam_day").description
        assert "18:00 local cut-off has passed" in dag.doc_md


def test_admin_form_is_typed_and_safe(dagbag):
    dag = dagbag.dags["gradeflow__admin_rerun"]
    params = dag.params
    assert params["dry_run"] is True
    schema = {k: params.get_param(k).schema for k in params}
    assert schema["institution"]["enum"] == [i.id for i in load_institutions()]
    assert set(schema["stage"]["enum"]) == {"prepare", "grade", "publish"}
    assert set(schema["scope"]["enum"]) == {"day", "question", "student"}
    assert schema["reason"]["minLength"] == 10 and "pattern" in schema["exam_day"]


def test_every_trigger_form_validates_with_its_defaults_and_documents_each_field(dagbag):
    """What the REST API and the UI do with a trigger's conf: resolve the DAG's params against their schema."""
    for dag in dagbag.dags.values():
        resolved = copy.deepcopy(dag.params)
        resolved.validate()  # raises ParamValidationError for any default the form would refuse
        for key in dag.params:
            param = dag.params.get_param(key)
            assert param.description and param.schema.get("title"), (dag.dag_id, key)
            if param.value is None or param.value == "":
                assert "null" in param.schema["type"], (dag.dag_id, key)  # may be left empty


@pytest.mark.parametrize(("dag_id", "conf", "message"), [
    ("northfield__prepare", {"exam_day": "23/11/2026"}, "does not match"),
    ("northfield__publish", {"exam_day": "2026-11-23x"}, "does not match"),
    ("gradeflow__admin_rerun", {"scope": "class"}, "is not one of"),
    ("gradeflow__admin_rerun", {"reason": "short"}, "is too short"),
    ("gradeflow__admin_rerun", {"institution": "elsewhere"}, "is not one of"),
])
def test_a_bad_value_is_refused_with_a_message(dagbag, dag_id, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags[dag_id].params)
    with pytest.raises(ParamValidationError, match=message):
        params.update(conf)
        params.validate()


def test_ingest_has_no_exam_day_and_stages_take_an_empty_one(dagbag):
    assert "exam_day" not in dagbag.dags["lakeshore__ingest"].params
    for stage in ("prepare", "grade", "publish"):
        params = copy.deepcopy(dagbag.dags[f"lakeshore__{stage}"].params)
        for empty in (None, "", "2026-11-23"):
            params.update({"exam_day": empty})
            params.validate()


def test_descriptions_show_local_schedule_beside_utc(dagbag):
    assert "18:00 Asia/Kolkata (12:30 UTC)" in dagbag.dags["lakeshore__prepare"].description
    ny = dagbag.dags["northfield__publish"]
    assert "06:00 America/New_York (11:00 UTC; 10:00 UTC in summer time)" in ny.description
    assert "06:00 America/New_York" in ny.doc_md


def test_publish_has_a_release_deadline_alert_per_institution(dagbag):
    from gradeflow.airflow.alerts import release_deadline_missed

    for inst in load_institutions():
        deadline = dagbag.dags[f"{inst.id}__publish"].deadline
        alert = deadline[0] if isinstance(deadline, list) else deadline
        hours, minutes = map(int, inst.release_deadline.split(":"))
        assert alert.interval == timedelta(hours=hours - 6, minutes=minutes)  # after the 06:00 local run
        assert alert.callback.path == f"{release_deadline_missed.__module__}.release_deadline_missed"
        assert alert.callback.kwargs == {"institution_id": inst.id, "deadline_local": inst.release_deadline}


def test_dag_catalogue_is_up_to_date(dagbag):
    from devstack.dag_catalogue import CATALOGUE, render

    assert CATALOGUE.read_text() == render(dagbag.dags), "run: .venv/bin/python -m devstack.dag_catalogue"


def test_the_report_is_a_teardown_after_the_release(dagbag):
    """write_report runs whether or not the gate passed (and whatever the faculty decided), retries, and cannot
    turn a failed release green or a released day red: the run's state comes from the release and the students'
    export (skipped, not failed, when faculty reject the day; failed when nobody decides in time)."""
    for inst in load_institutions():
        dag = dagbag.dags[f"{inst.id}__publish"]
        report = dag.get_task("write_report")
        assert report.is_teardown and report.upstream_task_ids == {"export_for_students"}
        assert report.trigger_rule == "all_done_setup_success" and report.retries >= 1
        assert not report.on_failure_fail_dagrun
        leaves = [t.task_id for t in dag.tasks if not t.is_teardown and all(
            dag.get_task(d).is_teardown for d in t.downstream_task_ids)]
        assert leaves == ["export_for_students"]


STUDENT_STEP = {"auto": None, "after_faculty_approval": "ask_faculty_approval", "at": "wait_for_student_release"}


def test_students_get_the_release_after_the_institutions_sign_off_step(dagbag):
    """publish_release -> [ask_faculty_approval | wait_for_student_release] -> export_for_students, per
    institution's student_release; the approval is Airflow's HITL ApprovalOperator, waiting up to
    faculty_approval_hours, and the run may last that long (the sample file has one institution of each kind)."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger  # noqa: F401 - the wait's trigger

    kinds = set()
    for inst in load_institutions():
        kind = "at" if inst.student_release_at else inst.student_release
        kinds.add(kind)
        dag = dagbag.dags[f"{inst.id}__publish"]
        export = dag.get_task("export_for_students")
        step = STUDENT_STEP[kind]
        others = set(STUDENT_STEP.values()) - {step, None}
        assert not others & set(dag.task_ids), inst.id
        if step is None:
            assert export.upstream_task_ids == {"publish_release"}, inst.id
            assert dag.dagrun_timeout == timedelta(hours=2)
            continue
        gate = dag.get_task(step)
        assert export.upstream_task_ids == {"publish_release", step} and gate.upstream_task_ids == {"publish_release"}
        assert "Students" in dag.doc_md and step in dag.doc_md
        if kind == "after_faculty_approval":
            assert isinstance(gate, ApprovalOperator)
            assert gate.response_timeout == timedelta(hours=inst.faculty_approval_hours)
            assert gate.defaults is None  # a timeout never picks an option: never released to students by default
            assert dag.dagrun_timeout == timedelta(hours=2 + inst.faculty_approval_hours)
        else:
            assert dag.dagrun_timeout > timedelta(hours=2) and gate.execution_timeout > timedelta(hours=1)
    assert kinds == set(STUDENT_STEP)


# Modules a task needs and parsing does not: each costs a tenth of a second or more per parse of the DAG file
# (1,200 DAGs, issue 9), and the AWS SDK came in through the provider handlers of an Asset URI scheme.
HEAVY_AT_RUN_TIME = ("pandas", "pyarrow", "great_expectations", "openai", "boto3", "botocore", "psycopg",
                     "airflow.providers.amazon.aws.hooks.s3")


def test_parsing_the_institution_dag_file_loads_no_heavy_module(project_root, tmp_path):
    """The file that builds 4 DAGs per institution (1,200 at 300): the admin DAG file is one DAG, parsed apart."""
    import json
    import os
    import subprocess
    import sys

    # What the DAG file itself loads: Airflow may have some of these already (a Postgres metadata database
    # brings psycopg), which costs the parse nothing.
    code = ("import json, sys; from airflow.dag_processing.dagbag import DagBag; import airflow.sdk; "
            "before = set(sys.modules); "
            f"bag = DagBag({str(project_root / 'dags' / 'institution_dags.py')!r}); "
            "assert not bag.import_errors, bag.import_errors; "
            f"print(json.dumps([m for m in {list(HEAVY_AT_RUN_TIME)!r} if m in sys.modules and m not in before]))")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PYTHONPATH": os.pathsep.join([str(project_root / "plugins"), str(project_root)])}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=project_root, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_an_institution_with_its_own_queue_sends_every_task_there(project_root, tmp_path, monkeypatch):
    """`queue:` in the tenants' file routes all four DAGs' tasks to that Celery queue (a worker holding only that
    institution's connections serves it: docs/scale-out.md); the others keep Airflow's default queue."""
    import os

    import yaml

    data = yaml.safe_load((project_root / "include" / "institutions.yaml").read_text())
    data["institutions"][0]["queue"] = "gradeflow.own"
    own = data["institutions"][0]["id"]
    (tmp_path / "institutions.yaml").write_text(yaml.safe_dump(data))
    # Parsed in this process (the tenants' file is read at each parse; a child would import Airflow again).
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("GRADEFLOW_INSTITUTIONS", str(tmp_path / "institutions.yaml"))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(project_root / "dags" / "institution_dags.py"))
    assert not bag.import_errors, bag.import_errors
    queues = {d.dag_id: sorted({t.queue for t in d.tasks}) for d in bag.dags.values()}
    assert {d: q for d, q in queues.items() if d.startswith(f"{own}__")} == {
        f"{own}__{s}": ["gradeflow.own"] for s in STAGES}
    assert {tuple(q) for d, q in queues.items() if not d.startswith(f"{own}__")} == {("default",)}


def test_each_task_sees_the_dags_exam_day_when_it_runs(dagbag):
    """`exam_day` is added to each stage DAG after its tasks (gradeflow.airflow.policy.add_exam_day: no copy in
    every operator at parse time); Airflow merges the DAG's params into the task's when the task runs, so every
    task still gets the trigger's value, the default when the form is left empty, and a bad value is refused."""
    from types import SimpleNamespace

    from airflow.sdk.definitions.param import process_params
    from airflow.sdk.exceptions import ParamValidationError

    for inst in load_institutions():
        for stage in ("prepare", "grade", "publish"):
            dag = dagbag.dags[f"{inst.id}__{stage}"]
            assert dag.params.get_param("exam_day").schema["pattern"], dag.dag_id
            for task in dag.tasks:
                assert "exam_day" not in task.params, (dag.dag_id, task.task_id)  # not copied into each operator
                # A task runs in a process of its own that parses the file afresh; process_params resolves the
                # trigger's value into the Param it merged, hence a fresh copy of the DAG's params per check.
                def run(conf, dag=dag, task=task):
                    return process_params(SimpleNamespace(params=copy.deepcopy(dag.params)), task, conf,
                                          suppress_exception=False)

                assert run({})["exam_day"] is None, (dag.dag_id, task.task_id)
                assert run({"exam_day": "2026-11-20"})["exam_day"] == "2026-11-20", (dag.dag_id, task.task_id)
                with pytest.raises(ParamValidationError, match="does not match"):
                    run({"exam_day": "20/11/2026"})
    # Each DAG has its own Param: a value set on one DAG's form does not leak into another's.
    one, other = dagbag.dags["northfield__prepare"], dagbag.dags["northfield__grade"]
    assert one.params.get_param("exam_day") is not other.params.get_param("exam_day")


def test_parsing_leaves_garbage_collection_as_it_was(dagbag):
    """The DAG file pauses the cyclic collector while it builds its DAGs (gradeflow.airflow.policy.
    building_many_dags) and must give it back, also when building fails."""
    import gc

    from gradeflow.airflow.policy import building_many_dags

    assert dagbag.dags and gc.isenabled()
    with pytest.raises(RuntimeError), building_many_dags():
        assert not gc.isenabled()
        raise RuntimeError("a bad institution")
    assert gc.isenabled()
    gc.disable()
    try:
        with building_many_dags():
            pass
        assert not gc.isenabled()  # left as it was found: disabled
    finally:
        gc.enable()
