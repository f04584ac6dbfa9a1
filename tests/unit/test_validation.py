"""The release gate's Great Expectations validation, on real GX (no mocks)."""

import json
import math

import pandas as pd
import pytest

from gradeflow.release.gate import (
    DEFAULT_EXPECTATIONS_DIR,
    CheckResult,
    ValidationOutcome,
    load_suite,
    validate_day,
)

INST = "north"
DAY = "2026-11-23"
COLUMNS = ["institution", "exam_day", "submission_id", "question_id", "max_points", "grade_count", "in_review",
           "waiting", "score", "grader"]


def _row(submission, question, *, grader="rule", score=1.0, max_points=2.0, grade_count=None, in_review=None,
         waiting=False, institution=INST):
    """One answer row; a grader means one current grade, no grader means in review (or waiting, if asked)."""
    graded = grader is not None
    return {
        "institution": institution, "exam_day": DAY, "submission_id": submission, "question_id": question,
        "max_points": max_points, "grade_count": (1 if graded else 0) if grade_count is None else grade_count,
        "in_review": (not graded and not waiting) if in_review is None else in_review,
        "waiting": waiting,
        "score": score if graded else math.nan, "grader": grader,
    }


def good_answers() -> pd.DataFrame:
    return pd.DataFrame([
        _row("s1", "q1", grader="rule", score=2.0),
        _row("s1", "q2", grader="llm", score=0.0),
        _row("s2", "q1", grader="human", score=1.5),
        _row("s2", "q2", grader=None),
    ], columns=COLUMNS)


def summary_for(answers: pd.DataFrame, /, **overrides) -> pd.DataFrame:
    """The conservation summary the publish step would compute for these answers."""
    counts = {
        "answers": len(answers[["submission_id", "question_id"]].drop_duplicates()),
        "graded_rule": int((answers["grader"] == "rule").sum()),
        "graded_llm": int((answers["grader"] == "llm").sum()),
        "graded_human": int((answers["grader"] == "human").sum()),
        "in_review": int(answers["in_review"].astype(bool).sum()),
        "deferred": 0,
        "pending_model": int(answers["waiting"].astype(bool).sum()),
        "received": 0,
    }
    return pd.DataFrame([{"institution": INST, "exam_day": DAY, **counts, **overrides}])


def failed(outcome: ValidationOutcome) -> set[tuple[str, str, str | None]]:
    return {(r.suite, r.expectation, r.column) for r in outcome.failures()}


def test_good_day_passes():
    answers = good_answers()
    outcome = validate_day(answers, summary_for(answers), institution=INST)
    assert outcome.success, outcome.failures()
    assert outcome.failures() == ()
    assert {r.suite for r in outcome.results} == {"grades", "day_summary"}
    assert all(isinstance(r, CheckResult) and r.success for r in outcome.results)


def test_each_suite_builds_its_frame_into_a_batch_once(monkeypatch):
    """Issue 18: GX fingerprints a pandas batch's whole frame (for its batch markers) each time it builds the
    batch: ~0.5 s per pass over 1M answers. The gate builds each suite's batch once; `Batch.validate` built it a
    second time from the batch's definition. Real GX; only its fingerprint function is wrapped, to count calls."""
    import great_expectations.execution_engine.pandas_execution_engine as engine

    fingerprinted = []
    real = engine.hash_pandas_dataframe
    monkeypatch.setattr(engine, "hash_pandas_dataframe", lambda frame: fingerprinted.append(len(frame)) or real(frame))
    answers = good_answers()
    assert validate_day(answers, summary_for(answers), institution=INST).success
    assert sorted(fingerprinted) == [1, len(answers)]  # the summary row and the answers, once each


def test_waiting_answers_are_accounted_once():
    """Deferred, pending-model and received answers count as one outcome each, never beside a grade."""
    answers = pd.concat([good_answers(), pd.DataFrame([_row("s3", "q1", grader=None, waiting=True)])],
                        ignore_index=True)
    assert validate_day(answers, summary_for(answers), institution=INST).success
    answers.loc[0, "waiting"] = True  # graded and waiting: counted twice
    assert OUTCOMES in failed(validate_day(answers, summary_for(answers), institution=INST))


def test_results_follow_suite_order():
    answers = good_answers()
    outcome = validate_day(answers, summary_for(answers), institution=INST)
    grades = load_suite("grades")
    summary = load_suite("day_summary")
    expected = [e.expectation_type for e in grades.expectations] + [e.expectation_type for e in summary.expectations]
    assert [r.expectation for r in outcome.results] == expected


def _broken(**changes_by_row) -> pd.DataFrame:
    answers = good_answers()
    for index, changes in changes_by_row.items():
        for column, value in changes.items():
            answers.loc[int(index.lstrip("r")), column] = value
    return answers


OUTCOMES = ("grades", "expect_column_values_to_be_in_set", "outcomes")


@pytest.mark.parametrize(("answers", "expected"), [
    pytest.param(_broken(r3={"in_review": False}), OUTCOMES, id="missing-grade"),
    pytest.param(_broken(r0={"grade_count": 2}), OUTCOMES, id="double-grade"),
    pytest.param(_broken(r0={"in_review": True}), OUTCOMES, id="graded-and-in-review"),
    pytest.param(_broken(r0={"score": 2.5}),
                 ("grades", "expect_column_pair_values_a_to_be_greater_than_b", "max_points,score"),
                 id="score-above-max"),
    pytest.param(_broken(r1={"score": -0.5}), ("grades", "expect_column_values_to_be_between", "score"),
                 id="negative-score"),
    pytest.param(_broken(r2={"grader": "robot"}), ("grades", "expect_column_values_to_be_in_set", "grader"),
                 id="unknown-grader"),
    pytest.param(_broken(r1={"institution": "south"}),
                 ("grades", "expect_column_values_to_be_in_set", "institution"), id="wrong-institution"),
    pytest.param(_broken(r0={"submission_id": None}),
                 ("grades", "expect_column_values_to_not_be_null", "submission_id"), id="null-id"),
])
def test_broken_invariant_fails_naming_its_expectation(answers, expected):
    outcome = validate_day(answers, summary_for(good_answers()), institution=INST)
    assert not outcome.success
    assert expected in failed(outcome)
    failure = next(r for r in outcome.failures() if (r.suite, r.expectation, r.column) == expected)
    assert failure.unexpected_count == 1
    assert failure.details.startswith("1 of 4 rows unexpected")


def test_duplicated_answer_fails_uniqueness():
    answers = good_answers()
    answers = pd.concat([answers, answers.iloc[[0]]], ignore_index=True)
    outcome = validate_day(answers, summary_for(good_answers()), institution=INST)
    assert failed(outcome) == {("grades", "expect_compound_columns_to_be_unique", "submission_id,question_id")}
    assert outcome.failures()[0].unexpected_count == 2  # GX counts every row of a duplicated key


def test_double_grade_as_the_publish_query_shows_it():
    """Two current grades: the LEFT JOIN yields two rows, each with grade_count 2."""
    answers = good_answers()
    answers.loc[0, "grade_count"] = 2
    second = answers.iloc[[0]].assign(grader="llm", score=1.0)
    answers = pd.concat([answers, second], ignore_index=True)
    outcome = validate_day(answers, summary_for(good_answers(), graded_llm=2), institution=INST)
    assert {OUTCOMES, ("grades", "expect_compound_columns_to_be_unique", "submission_id,question_id")} <= failed(
        outcome)


def test_institution_is_a_run_time_parameter():
    answers = good_answers()
    assert validate_day(answers, summary_for(answers), institution=INST).success
    outcome = validate_day(answers, summary_for(answers), institution="south")
    assert failed(outcome) == {("grades", "expect_column_values_to_be_in_set", "institution")}
    assert outcome.failures()[0].unexpected_count == 4


def test_conservation_broken_fails():
    answers = good_answers()
    outcome = validate_day(answers, summary_for(answers, graded_llm=2), institution=INST)
    assert failed(outcome) == {("day_summary", "expect_column_pair_values_to_be_equal", "answers,accounted")}


def test_summary_must_count_the_validated_answers():
    answers = good_answers()
    outcome = validate_day(answers, summary_for(answers, answers=5, graded_llm=2), institution=INST)
    assert failed(outcome) == {("day_summary", "expect_column_pair_values_to_be_equal", "answers,answer_rows")}


def test_negative_answer_count_fails():
    empty = pd.DataFrame([], columns=COLUMNS)
    outcome = validate_day(empty, summary_for(empty, answers=-1, in_review=-1), institution=INST)
    assert ("day_summary", "expect_column_values_to_be_between", "answers") in failed(outcome)


def test_missing_summary_row_fails():
    answers = good_answers()
    outcome = validate_day(answers, summary_for(answers).iloc[0:0], institution=INST)
    assert failed(outcome) == {("day_summary", "expect_table_row_count_to_equal", None)}


def test_empty_day_passes():
    """A day without answers, as the publish query returns it (no rows, all-object columns)."""
    empty = pd.DataFrame([], columns=COLUMNS)
    outcome = validate_day(empty, summary_for(empty), institution=INST)
    assert outcome.success, outcome.failures()


def test_empty_day_without_columns_passes():
    outcome = validate_day(pd.DataFrame(), summary_for(pd.DataFrame([], columns=COLUMNS)), institution=INST)
    assert outcome.success, outcome.failures()


def test_missing_input_column_is_an_error():
    with pytest.raises(ValueError, match="answers frame lacks column"):
        validate_day(good_answers().drop(columns=["grader"]), summary_for(good_answers()), institution=INST)
    with pytest.raises(ValueError, match="summary frame lacks column"):
        validate_day(good_answers(), summary_for(good_answers()).drop(columns=["graded_llm"]), institution=INST)


def test_a_check_gx_cannot_evaluate_fails_visibly(tmp_path):
    """A suite naming a column the frame does not have: GX reports an error, the gate fails."""
    document = json.loads((DEFAULT_EXPECTATIONS_DIR / "grades.json").read_text())
    document["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nope"},
                                     "meta": {"notes": "test"}})
    (tmp_path / "grades.json").write_text(json.dumps(document))
    (tmp_path / "day_summary.json").write_text((DEFAULT_EXPECTATIONS_DIR / "day_summary.json").read_text())
    outcome = validate_day(good_answers(), summary_for(good_answers()), institution=INST, expectations_dir=tmp_path)
    assert not outcome.success
    (failure,) = outcome.failures()
    assert (failure.expectation, failure.column, failure.unexpected_count) == (
        "expect_column_values_to_not_be_null", "nope", None)
    assert failure.details.startswith('could not be evaluated: Error: The column "nope" in BatchData does not exist.')


def test_to_dict_is_json_serialisable():
    answers = _broken(r0={"score": 9.0}, r2={"grader": "robot"})
    outcome = validate_day(answers, summary_for(good_answers()), institution=INST)
    stored = json.loads(json.dumps(outcome.to_dict()))
    assert stored["success"] is False
    assert stored["failed"] == 2
    assert len(stored["results"]) == stored["checks"] == len(outcome.results)
    assert set(stored["results"][0]) == {"suite", "expectation", "column", "success", "unexpected_count", "details"}


def test_repeated_calls_do_not_collide():
    answers = good_answers()
    outcomes = [validate_day(answers, summary_for(answers), institution=INST) for _ in range(3)]
    assert all(o.success for o in outcomes)


@pytest.mark.parametrize("name", ["grades", "day_summary"])
def test_every_expectation_says_which_promise_it_guards(name):
    document = json.loads((DEFAULT_EXPECTATIONS_DIR / f"{name}.json").read_text())
    assert document["name"] == name
    for expectation in document["expectations"]:
        assert expectation["meta"]["notes"].strip(), expectation["type"]
    assert len(load_suite(name).expectations) == len(document["expectations"])


def test_an_invalid_expectation_is_an_error_not_a_silently_dropped_guard(tmp_path):
    document = json.loads((DEFAULT_EXPECTATIONS_DIR / "grades.json").read_text())
    document["expectations"][0]["kwargs"] = {"colum": "institution"}
    (tmp_path / "grades.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="expectation #0"):
        load_suite("grades", tmp_path)


def test_suite_name_must_match_its_file(tmp_path):
    document = json.loads((DEFAULT_EXPECTATIONS_DIR / "day_summary.json").read_text())
    (tmp_path / "grades.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="named 'day_summary'"):
        load_suite("grades", tmp_path)


def test_a_changed_suite_file_is_loaded_again_and_a_broken_one_is_an_error(tmp_path):
    """The gate keeps one context and each suite as loaded (gate._Gate), per version of the suite's file: an edited
    suite takes effect at the next validation in the same process, and a suite broken later fails the gate."""
    import os

    for name in ("grades", "day_summary"):
        (tmp_path / f"{name}.json").write_text((DEFAULT_EXPECTATIONS_DIR / f"{name}.json").read_text())
    answers = _broken(r0={"score": 1.75})
    assert validate_day(answers, summary_for(answers), institution=INST, expectations_dir=tmp_path).success
    document = json.loads((tmp_path / "grades.json").read_text())
    document["expectations"].append({"type": "expect_column_values_to_be_in_set",
                                     "kwargs": {"column": "score", "value_set": [0.0, 1.5, 2.0]},
                                     "meta": {"notes": "a test's extra guard: whole and half points only"}})
    path = tmp_path / "grades.json"
    path.write_text(json.dumps(document))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # a later version, surely
    outcome = validate_day(answers, summary_for(answers), institution=INST, expectations_dir=tmp_path)
    assert failed(outcome) == {("grades", "expect_column_values_to_be_in_set", "score")}
    assert validate_day(answers, summary_for(answers), institution=INST).success  # the repository's suites: apart
    document["expectations"][0]["kwargs"] = {"colum": "institution"}
    path.write_text(json.dumps(document))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000))
    with pytest.raises(ValueError, match="expectation #0"):
        validate_day(answers, summary_for(answers), institution=INST, expectations_dir=tmp_path)


def test_one_process_validating_several_institutions_checks_each_against_its_own():
    """The suites and batch definitions are kept across calls (gate._Gate), the institution is each call's suite
    parameter: a day of `south` passes for south, then fails for north, and north's passes again."""
    north = good_answers()
    south = good_answers().assign(institution="south")
    south_summary = summary_for(south).assign(institution="south")
    assert validate_day(north, summary_for(north), institution=INST).success
    assert validate_day(south, south_summary, institution="south").success
    assert ("grades", "expect_column_values_to_be_in_set", "institution") in failed(
        validate_day(south, south_summary, institution=INST))
    assert not validate_day(north, summary_for(north), institution="south").success
    assert validate_day(north, summary_for(north), institution=INST).success
