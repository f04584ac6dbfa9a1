"""The release gate: Great Expectations suites over one institution's exam day.

Two suites, kept as data in expectations/ and loaded at run time:

* ``grades`` checks the row-level frame of answers and their outcomes (one row per received answer);
* ``day_summary`` checks the day's conservation summary (one row per institution and day).

Both run on an ephemeral GX context with a pandas data source, a dataframe asset and a
whole-dataframe batch definition per suite; the dataframe is a batch parameter of each validation.
The context and its batch definitions are built once per process and each suite is loaded once per
version of its file (`_Gate`): building them cost more than validating a small day (GX saves its
project config as YAML at every data source, asset and batch definition it adds). The institution the
rows must belong to is a suite parameter (``expected_institutions``) supplied at run time, so the
suite file stays the same for every institution.

Great Expectations is imported inside the functions only: it takes seconds to import, and Airflow
parses the DAG files that import this module's siblings.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

DEFAULT_EXPECTATIONS_DIR = Path(__file__).resolve().parents[3] / "expectations"

ANSWER_COLUMNS = ("institution", "exam_day", "submission_id", "question_id", "max_points", "grade_count",
                  "in_review", "waiting", "score", "grader")
# The states of an answer's life (docs/answer-lifecycle.md); conservation: answers = the sum of the others.
SUMMARY_COUNTS = ("answers", "graded_rule", "graded_llm", "graded_human", "in_review", "deferred", "pending_model",
                  "received")
INSTITUTION_PARAMETER = "expected_institutions"
_SAMPLE_SIZE = 3
# BASIC gives unexpected_count and a few sample values; SUMMARY would also compute per-value counts.
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": _SAMPLE_SIZE}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation: which suite, which check, on which column(s), and what was seen."""

    suite: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    details: str


@dataclass(frozen=True)
class ValidationOutcome:
    """The outcome of the release gate over one day: it passes only if every check passed."""

    success: bool
    results: tuple[CheckResult, ...]

    def failures(self) -> tuple[CheckResult, ...]:
        """The checks that failed, in suite order."""
        return tuple(r for r in self.results if not r.success)

    def to_dict(self) -> dict:
        """A JSON-serialisable form, for storing in Postgres and logging."""
        return {
            "success": self.success,
            "checks": len(self.results),
            "failed": len(self.failures()),
            "results": [asdict(r) for r in self.results],
        }


def _quiet_gx() -> None:
    """Opt out of GX usage analytics for this process unless the environment already says otherwise.

    GX 1.24.1 ships no analytics client (only the documented switch is left), so this is belt and braces
    for other versions; the context config below also sets ``analytics_enabled=False``.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def load_suite(name: str, expectations_dir: Path | None = None) -> ExpectationSuite:
    """Load the suite ``<expectations_dir>/<name>.json`` (default: the repo's expectations/ folder).

    Raises ValueError when the file's suite name differs from ``name`` or when any expectation in it
    is invalid: GX's ExpectationSuite would otherwise log the bad one and silently drop it, which
    would quietly remove a guard from the release gate.
    """
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.core.expectation_suite import expectationSuiteSchema

    path = (expectations_dir or DEFAULT_EXPECTATIONS_DIR) / f"{name}.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # name the file: a bare JSONDecodeError says only "line 3 column 5"
        raise ValueError(f"expectations suite {path} is not valid JSON: {exc}") from exc
    data = expectationSuiteSchema.load(document)
    if data.get("name") != name:
        raise ValueError(f"{path}: suite is named {data.get('name')!r}, expected {name!r}")
    for index, config in enumerate(data.get("expectations", [])):
        _check_expectation(path, index, config)
    suite = gx.ExpectationSuite(**data)
    if len(suite.expectations) != len(data.get("expectations", [])):
        raise ValueError(f"{path}: GX dropped {len(data['expectations']) - len(suite.expectations)} expectation(s)")
    return suite


def _check_expectation(path: Path, index: int, config: ExpectationConfiguration) -> None:
    """Raise ValueError naming the expectation when GX cannot build it from its configuration."""
    try:
        config.to_domain_obj()
    except Exception as exc:
        raise ValueError(f"{path}: expectation #{index} ({config.type}) is invalid: {exc}") from exc


def prepare_answers(answers: pd.DataFrame) -> pd.DataFrame:
    """A copy of the answers frame with the helper column ``outcomes`` = grade_count + in_review + waiting.

    Null stays null (and fails the suite's not-null check) rather than being guessed as 0. An empty
    frame without columns (a day with no answers) gets the expected columns, so it validates as the
    empty day it is; GX would otherwise fail every check on the missing columns. A non-empty frame
    missing a column is a programming error: ValueError.
    """
    import pandas as pd

    frame = answers.copy()
    if frame.empty:
        frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *ANSWER_COLUMNS])))
    _require_columns("answers", frame, ANSWER_COLUMNS)
    grade_count = pd.to_numeric(frame["grade_count"]).astype("float64")
    in_review = frame["in_review"].astype("boolean").astype("Float64").astype("float64")
    waiting = frame["waiting"].astype("boolean").astype("Float64").astype("float64")
    frame["outcomes"] = grade_count + in_review + waiting
    for column in ("max_points", "score"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame


def _require_columns(name: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Raise ValueError naming the columns ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the {name} frame lacks column(s) {', '.join(missing)}")


def prepare_summary(summary: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """A copy of the summary with the helper columns ``accounted`` and ``answer_rows``.

    ``accounted`` = the sum of every state's count (graded by rule, model or human, in review, deferred,
    pending the model, received); ``answer_rows`` = the number of
    distinct (submission_id, question_id) in the row-level frame, so the two frames are tied together.
    """
    import pandas as pd

    _require_columns("summary", summary, SUMMARY_COUNTS)
    frame = summary.copy()
    counts = {column: pd.to_numeric(frame[column]) for column in SUMMARY_COUNTS}
    frame["accounted"] = sum(counts[column] for column in SUMMARY_COUNTS if column != "answers")
    keys = [c for c in ("submission_id", "question_id") if c in answers.columns]
    frame["answer_rows"] = len(answers[keys].drop_duplicates()) if len(keys) == 2 else len(answers)
    return frame


def _ephemeral_context() -> AbstractDataContext:
    """An in-memory GX context without analytics, progress bars or a temporary data docs site.

    The default ephemeral config would allocate a temporary data docs folder; progress bars default to
    on and are only turned off through the context's ``progress_bars`` config.
    """
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_suite(suite: ExpectationSuite, frame: pd.DataFrame, parameters: dict[str, Any],
               batch_definition: Any) -> ExpectationSuiteValidationResult:
    """Validate one dataframe against one suite through `batch_definition` (`_batch_definition`'s: the frame is a
    batch parameter).

    The batch is built once, by the validator that runs the suite: GX's own `Batch.validate` (what
    `batch_definition.get_batch(...).validate(...)` calls) builds the validator from the batch's definition and so
    builds the batch a second time, and every build of a pandas batch fingerprints the whole frame for GX's batch
    markers (`hash_pandas_dataframe`: ~0.5 s per pass over a day of 1M answers, issue 18). The validator is the one
    `Batch.validate` uses (great_expectations.validator.v1_validator), with the same batch definition, parameters
    and result format, so the results are the same.
    """
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(batch_definition=batch_definition, batch_parameters={"dataframe": frame},
                          result_format=_RESULT_FORMAT)
    return validator.validate_expectation_suite(suite, expectation_parameters=parameters or None)


def _batch_definition(context: AbstractDataContext, suite_name: str) -> Any:
    """A new, uniquely named pandas datasource with a dataframe asset and its whole-dataframe batch definition."""
    datasource = context.data_sources.add_pandas(name=f"gradeflow_{suite_name}_{uuid.uuid4().hex}")
    asset = datasource.add_dataframe_asset(name=f"{suite_name}_frame")
    return asset.add_batch_definition_whole_dataframe(name=f"{suite_name}_whole")


class _Gate:
    """What every validation in a process shares: one ephemeral context, one batch definition per suite, and each
    suite as loaded (and checked) from the current version of its file, with its results' order. A suite file that
    changes (its size or modification time) is loaded again. One validation at a time (`lock`): GX's context is not
    documented as safe across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.context: AbstractDataContext | None = None
        self.batch_definitions: dict[str, Any] = {}
        self.suites: dict[tuple[str, str], tuple[tuple[int, int], ExpectationSuite, dict[str, int]]] = {}

    def suite(self, name: str, expectations_dir: Path | None) -> tuple[ExpectationSuite, dict[str, int]]:
        path = (expectations_dir or DEFAULT_EXPECTATIONS_DIR) / f"{name}.json"
        try:
            stat = path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
        except OSError:  # load_suite names the missing file
            version = None
        key = (name, str(path.resolve()))
        found = self.suites.get(key)
        if found is None or version is None or found[0] != version:
            suite = load_suite(name, expectations_dir)
            found = self.suites[key] = (version, suite, _suite_order(suite))
        return found[1], found[2]

    def run(self, suite: ExpectationSuite, frame: pd.DataFrame,
            parameters: dict[str, Any]) -> ExpectationSuiteValidationResult:
        if self.context is None:
            self.context = _ephemeral_context()
        if suite.name not in self.batch_definitions:
            self.batch_definitions[suite.name] = _batch_definition(self.context, suite.name)
        return _run_suite(suite, frame, parameters, self.batch_definitions[suite.name])


_GATE = _Gate()


def _suite_order(suite: ExpectationSuite) -> dict[str, int]:
    """Give each expectation an id (if it has none) and return id -> position in the suite.

    GX returns results in the order its metric graph resolves them, not in suite order.
    """
    order = {}
    for position, expectation in enumerate(suite.expectations):
        if expectation.id is None:
            expectation.id = str(uuid.uuid4())
        order[expectation.id] = position
    return order


def _columns(kwargs: dict) -> str | None:
    """The column(s) an expectation looks at: "col", "col_a,col_b", or None for table-level checks."""
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_A") and kwargs.get("column_B"):
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if kwargs.get("column_list"):
        return ",".join(str(c) for c in kwargs["column_list"])
    return None


def _short(value: Any, limit: int = 120) -> str:
    """repr of a value (numpy scalars turned into plain Python first), cut to ``limit`` characters."""
    text = repr(_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars and tuples into plain Python values for readable text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def _exception_message(info: dict | None) -> str | None:
    """The error message of a result that could not be evaluated, or None.

    GX reports an expectation's own error flat ({"raised_exception": ..., "exception_message": ...}),
    but a failed metric (a missing column, say) as a dict of such dicts keyed by metric id.
    """
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    messages = [str(v.get("exception_message")) for v in info.values()
                if isinstance(v, dict) and v.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages)) or None


def _describe(result: ExpectationValidationResult) -> str:
    """Short human text for one result: what was observed, and which promise the check guards."""
    error = _exception_message(result.exception_info)
    stats = result.result or {}
    if error is not None:
        seen = f"could not be evaluated: {error if len(error) <= 200 else error[:197] + '...'}"
    elif stats.get("unexpected_count") is not None:
        seen = f"{stats['unexpected_count']} of {stats.get('element_count')} rows unexpected"
        if stats["unexpected_count"]:
            seen += f", e.g. {_short(stats.get('partial_unexpected_list', [])[:_SAMPLE_SIZE])}"
    else:
        seen = f"observed {_short(stats.get('observed_value'))}"
    notes = (result.expectation_config.meta or {}).get("notes")
    return f"{seen}; guards: {notes}" if notes else seen


def _check_results(suite: ExpectationSuite, validation: ExpectationSuiteValidationResult,
                   order: dict[str, int]) -> list[CheckResult]:
    """Turn a GX suite validation result into CheckResults in suite order (``order``: id -> position)."""
    results = sorted(validation.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
    checks = []
    for result in results:
        config = result.expectation_config
        raised = _exception_message(result.exception_info) is not None
        unexpected = (result.result or {}).get("unexpected_count")
        checks.append(CheckResult(
            suite=suite.name,
            expectation=config.type,
            column=_columns(config.kwargs),
            success=bool(result.success) and not raised,
            unexpected_count=None if unexpected is None else int(unexpected),
            details=_describe(result),
        ))
    return checks


def validate_day(answers: pd.DataFrame, summary: pd.DataFrame, *, institution: str,
                 expectations_dir: Path | None = None) -> ValidationOutcome:
    """Run the ``grades`` and ``day_summary`` suites over one institution's exam day.

    ``answers`` has one row per received answer with its outcome; ``summary`` has the day's
    conservation counts. An empty day (no answers, all counts zero) passes: nothing to release is not
    a failure. The institution check takes ``institution`` through the suite parameter
    ``expected_institutions``.
    """
    parameters = {INSTITUTION_PARAMETER: [institution]}
    answer_frame, summary_frame = prepare_answers(answers), prepare_summary(summary, answers)
    with _GATE.lock:
        grades_suite, grades_order = _GATE.suite("grades", expectations_dir)
        summary_suite, summary_order = _GATE.suite("day_summary", expectations_dir)
        grades = _GATE.run(grades_suite, answer_frame, parameters)
        day = _GATE.run(summary_suite, summary_frame, parameters)
    results = tuple(_check_results(grades_suite, grades, grades_order)
                    + _check_results(summary_suite, day, summary_order))
    return ValidationOutcome(success=all(r.success for r in results), results=results)
