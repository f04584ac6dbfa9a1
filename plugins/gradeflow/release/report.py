"""The daily report: one self-contained HTML page per institution and exam day, written to S3.

`reports/<prefix>/<day>/report-v<N>.html` (N = the released version; `report-unreleased.html` while
nothing is released) holds the day's counts and plots of the score distribution per question,
the answer states (rule / model / human / in review / deferred / pending model / received), review
reasons, tokens and cost (estimated against actual), stage timings, model-vs-human agreement (per question and, for
rubric items, per criterion), the audit figures (the measured accuracy of model grades released without a human,
gradeflow.release.audit) and the threshold table (which min_confidence buys which accuracy at which review
workload, gradeflow.release.calibration, over the 28 exam days up to this one). No external resource:
inline CSS, plots as inline SVG, each with a <title>, so the page opens from a mail or a bucket.
Every figure is read through include/sql/report/ (states, reasons, scores, tokens, milestones) or
publish.day_counts, with bind parameters, for this one institution only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gradeflow.core import db, storage
from gradeflow.core.config import STAGES, Institution

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

STATE_COLOURS = {"rule": "#4e79a7", "model": "#59a14f", "human": "#b07aa1", "in review": "#f28e2b",
                 "deferred": "#edc948", "pending model": "#76b7b2", "received": "#e15759"}
BINS = ("<20%", "20-40%", "40-60%", "60-80%", "80-100%")
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


@dataclass
class ReportData:
    """Everything the page shows, read once; render() turns it into HTML without touching the database."""

    inst: Institution
    day: date
    counts: dict
    states: list[dict]
    reasons: list[dict]
    scores: list[dict]
    jobs: list[dict]
    request_tokens: list[dict]
    milestones: list[dict]
    timings: list[dict] = field(default_factory=list)
    agreement: list[dict] = field(default_factory=list)
    audit: dict = field(default_factory=dict)  # gradeflow.release.audit.audit_report: all audits to date
    criteria: list[dict] = field(default_factory=list)  # per-criterion agreement (agreement.criteria_report)
    thresholds: dict | None = None  # the threshold table (calibration.institution_table)
    ingest: list[dict] = field(default_factory=list)  # ingest_timings: one row per file of the day
    release_status: dict = field(default_factory=dict)  # release_status: released (and to students?) or why not
    generated_at: datetime = field(default_factory=lambda: datetime.now(ZoneInfo("UTC")))


def agreement_rows(conn: psycopg.Connection, inst: Institution, day: date) -> list[dict]:
    """Model-vs-human agreement per question for the day, where both graded the same answers.

    One dict per question: `question_id`, `pairs` (answers with both a model suggestion and a current
    human grade), `mean_abs_diff` (points) and `exact_share` (0..1, same score), plus the other figures
    of `gradeflow.release.agreement` (pearson_r, qwk). Empty when no human grade has a model suggestion yet; the
    report then says "no human grades yet".
    """
    from gradeflow.release import agreement

    return agreement.agreement_rows(conn, inst, day)


def gather(conn: psycopg.Connection, inst: Institution, day: date, timings: list[dict] | None = None) -> ReportData:
    """Read the day's figures for one institution (every query bound to its id and day).

    One snapshot (repeatable read, read only): the counts and the plots add up even while a rerun writes.
    """
    from gradeflow.release import publish

    params = {"inst": inst.id, "day": day}
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = publish.day_counts(conn, inst, day)
        return ReportData(
            inst=inst, day=day, counts=counts, ingest=ingest_timings(conn, inst, day),
            release_status=release_status(conn, inst, day, counts),
            states=db.fetch_all(conn, "report/answer_states", params),
            reasons=db.fetch_all(conn, "report/review_reasons", params),
            scores=db.fetch_all(conn, "report/score_distribution", params),
            jobs=db.fetch_all(conn, "report/batch_jobs", params),
            request_tokens=db.fetch_all(conn, "report/request_tokens", params),
            milestones=db.fetch_all(conn, "report/milestones", params),
            timings=list(timings or []), agreement=agreement_rows(conn, inst, day), audit=_audit_figures(conn, inst),
            **calibration_data(conn, inst, day))


def calibration_data(conn: psycopg.Connection, inst: Institution, day: date) -> dict:
    """The per-criterion agreement of the day and the threshold table of the 28 exam days up to it."""
    from gradeflow.release import agreement, calibration

    first = day - timedelta(days=calibration.DEFAULT_WINDOW_DAYS - 1)
    return {"criteria": agreement.criteria_report(agreement.day_criteria_rows(conn, inst, day)),
            "thresholds": calibration.institution_table(conn, inst, first, day)}


def ingest_timings(conn: psycopg.Connection, inst: Institution, day: date) -> list[dict]:
    """Each file of the day in arrival order: received (S3), load started and finished, seconds, rows, outcome."""
    return db.fetch_all(conn, "report/ingest_files", {"inst": inst.id, "day": day})


WAITING_STATES = (("in_review", "in review"), ("deferred", "deferred to the next night"),
                  ("pending_model", "waiting for the model"), ("received", "received, not prepared yet"))


def release_status(conn: psycopg.Connection, inst: Institution, day: date, counts: dict) -> dict:
    """Whether the day is released (to the institution, and to students) and, when not, why.

    `state` is one of: `nothing_to_release` (no answers), `gate_failed` (the latest gate's failed checks in
    `failures`), `grading` (no passing gate yet and work still open: `waiting` counts by state), `not_published`
    (graded, the publish run has not released it yet) or `released`; a released day also has `students`:
    `exported` (with who approved), `awaiting_approval`, `rejected`, `approval_timed_out`, `scheduled` (at HH:MM)
    or `pending` (the export step has not run yet), from the audit log (gradeflow.release.students).
    """
    from gradeflow.release import students

    version = counts["released_version"]
    waiting = {label: int(counts.get(key) or 0) for key, label in WAITING_STATES if int(counts.get(key) or 0)}
    if not counts["answers"]:
        return {"state": "nothing_to_release", "submissions": counts["submissions"],
                "rejected_rows": counts["rejected_rows"]}
    if not version:
        gate = db.fetch_all(conn, "report/last_gate", {"inst": inst.id, "day": day})
        if gate and not gate[0]["success"]:
            failed = [r for r in (gate[0]["results"] or {}).get("results", []) if not r.get("success")]
            return {"state": "gate_failed", "at": gate[0]["created_at"], "validation_id": gate[0]["validation_id"],
                    "failures": [f"{r['suite']}.{r['expectation']}({r.get('column') or ''}): {r.get('details')}"
                                 for r in failed], "waiting": waiting}
        return {"state": "grading" if waiting else "not_published", "waiting": waiting}
    status = {"state": "released", "version": version, "waiting": waiting, "student_release": inst.student_release}
    mine = [d for d in students.decisions(conn, inst, day) if d["version"] == version]
    latest = {d["action"]: d for d in reversed(mine)}  # newest of each action (the list is newest first)
    if "students_exported" in latest:
        approved = latest.get("faculty_approved")
        return {**status, "students": "exported", "at": latest["students_exported"]["at"],
                "approved_by": approved["actor"] if approved else None}
    newest = mine[0]["action"] if mine else None
    if newest == "faculty_rejected":
        return {**status, "students": "rejected", "by": mine[0]["actor"], "at": mine[0]["at"]}
    if newest == "faculty_approval_timed_out":
        return {**status, "students": "approval_timed_out", "at": mine[0]["at"]}
    if inst.needs_faculty_approval:
        asked = latest.get("faculty_approval_requested")
        return {**status, "students": "awaiting_approval", "at": asked["at"] if asked else None,
                "timeout_hours": inst.faculty_approval_hours}
    if inst.student_release_at:
        return {**status, "students": "scheduled", "at": inst.student_release_time(day)}
    return {**status, "students": "pending"}


def report_key(inst: Institution, day: date, version: int | None) -> str:
    """reports/<prefix>/<day>/report-v<N>.html, or report-unreleased.html while nothing is released."""
    return inst.key("reports", day, f"report-v{version}.html" if version else "report-unreleased.html")


def write_report(conn: psycopg.Connection, s3, inst: Institution, day: date,
                 timings: list[dict] | None = None) -> str:
    """Render the day's report and write it to S3 (same key on a rerun of the same release); return the key."""
    data = gather(conn, inst, day, timings)
    page = render(data)
    key = report_key(inst, day, data.counts["released_version"])
    storage.write_bytes(s3, key, page.encode(), "text/html; charset=utf-8")
    log.info("Report of %s %s: %d answers, %d plots, %d bytes, written to %s", inst.id, day,
             data.counts["answers"], page.count("<svg"), len(page), key)
    return key


# --- Airflow's record of the day's runs ------------------------------------------------------------

def airflow_stage_timings(context: dict[str, Any], inst: Institution, day: date) -> list[dict]:
    """How long each task of the day's stage runs took, from Airflow's metadata (through the Task SDK).

    For ingest, prepare and grade: the last run before this publish run whose logical date falls on
    `day` (local); then this publish run's finished tasks. One dict per task instance: stage, run_id,
    run_state, task (with [map index]), state, seconds. Best effort: outside a task, or if Airflow
    cannot say, it returns what it has (the report still shows GradeFlow's own step times).
    """
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetPreviousDagRun
    except ImportError:
        return []
    run = context.get("dag_run")
    anchor = getattr(run, "logical_date", None) or getattr(run, "run_after", None)
    runs = []
    for stage in STAGES[:-1]:
        try:
            found = task_runner.SUPERVISOR_COMMS.send(
                GetPreviousDagRun(dag_id=f"{inst.id}__{stage}", logical_date=anchor)).dag_run
        except Exception as exc:  # timings are optional; the report must still be written
            log.warning("No Airflow run found for %s__%s: %s", inst.id, stage, exc)
            continue
        when = found and (found.logical_date or found.run_after)
        if found and when.astimezone(inst.tz).date() == day:
            runs.append((stage, found.run_id, str(getattr(found.state, "value", found.state))))
    if run is not None:
        runs.append(("publish", run.run_id, "running"))
    rows: list[dict] = []
    for stage, run_id, run_state in runs:
        try:
            crumbs = task_runner.RuntimeTaskInstance.get_task_breadcrumbs(f"{inst.id}__{stage}", run_id)
            for c in crumbs:
                index = c.get("map_index")
                task_id = c["task_id"] + (f"[{index}]" if index is not None and index >= 0 else "")
                rows.append({"stage": stage, "run_id": run_id, "run_state": run_state, "task": task_id,
                             "state": str(c.get("state")), "seconds": float(c.get("duration") or 0.0)})
        except Exception as exc:  # as above: optional
            log.warning("No Airflow task timings for %s__%s %s: %s", inst.id, stage, run_id, exc)
    return rows


# --- SVG plots -------------------------------------------------------------------------------------

def _svg(title: str, width: int, height: int, body: list[str], plot_id: str) -> str:
    return (f'<svg class="plot" id="{plot_id}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def _compact(value: float) -> str:
    """An axis label that fits: 917,574 -> 918k, 2,500,000 -> 2.5M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return _fmt(value)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"


def hbar_chart(plot_id: str, title: str, items: list[tuple[str, float, str]], unit: str = "",
               width: int = 680) -> str:
    """Horizontal bars, one per (label, value, colour), each with a tooltip title."""
    label_w, row_h, top = 270, 24, 8
    height = top * 2 + row_h * max(len(items), 1)
    peak = max((v for _, v, _ in items), default=0) or 1
    body = []
    for i, (label, value, colour) in enumerate(items):
        y = top + i * row_h
        w = (width - label_w - 90) * value / peak
        short = label if len(label) <= 42 else label[:41] + "…"
        body.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(short)}</text>'
                    f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
                    f"<title>{escape(label)}: {_fmt(value)}{unit}</title></rect>"
                    f'<text x="{label_w + w + 4:.1f}" y="{y + 16}">{_fmt(value)}{unit}</text>')
    return _svg(title, width, height, body, plot_id)


def column_chart(plot_id: str, title: str, labels: list[str], series: list[tuple[str, list[float], str]],
                 width: int = 260, height: int = 150) -> str:
    """Vertical bars, grouped by label, one bar per series (name, values, colour), with a value axis."""
    left, bottom, top = 34, 22, 8
    peak = max((v for _, values, _ in series for v in values), default=0) or 1
    group_w = (width - left - 4) / max(len(labels), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    plot_h = height - bottom - top
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 2}" y2="{top + plot_h}" stroke="#888"/>',
            f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="small">{_compact(peak)}</text>',
            f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="small">0</text>']
    for g, label in enumerate(labels):
        x0 = left + g * group_w + group_w * 0.1
        body.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{height - 6}" text-anchor="middle" class="small">'
                    f"{escape(label)}</text>")
        for s, (name, values, colour) in enumerate(series):
            h = plot_h * values[g] / peak
            body.append(f'<rect x="{x0 + s * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                        f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}, {escape(name)}: '
                        f"{_fmt(values[g])}</title></rect>")
    return _svg(title, width, height, body, plot_id)


def timeline_chart(plot_id: str, title: str, rows: list[tuple[str, datetime, datetime, str]], tz: ZoneInfo,
                   width: int = 760) -> str:
    """A Gantt chart of (label, start, end, colour) in local time, with a few hour ticks."""
    label_w, row_h, top, axis_h = 210, 22, 6, 22
    height = top + row_h * max(len(rows), 1) + axis_h
    start = min(r[1] for r in rows)
    end = max(max(r[2], r[1] + timedelta(seconds=1)) for r in rows)
    span = (end - start).total_seconds() or 1.0
    scale = (width - label_w - 20) / span
    body = []
    for i, (label, t0, t1, colour) in enumerate(rows):
        y, x = top + i * row_h, label_w + (t0 - start).total_seconds() * scale
        w = max((t1 - t0).total_seconds() * scale, 2.0)
        seconds = (t1 - t0).total_seconds()
        body.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
                    f"<title>{escape(label)}: {t0.astimezone(tz):%H:%M:%S} to {t1.astimezone(tz):%H:%M:%S} "
                    f"local, {seconds:,.1f} s</title></rect>")
    axis_y = top + row_h * len(rows) + 14
    for k in range(5):
        at = start + timedelta(seconds=span * k / 4)
        x = label_w + span * k / 4 * scale
        body.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle" class="small">'
                    f"{at.astimezone(tz):%d %b %H:%M:%S}</text>")
    return _svg(title, width, height, body, plot_id)


# --- The page ---------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:24px auto;max-width:1100px;
padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555}.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px;background:#f7f9fc}
.tile b{display:block;font-size:20px}.grid{display:flex;flex-wrap:wrap;gap:12px}
.q{border:1px solid #eee;border-radius:6px;padding:6px}.q h3{font-size:12px;margin:0 0 4px;font-weight:600}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child,td.t{text-align:left}.note{color:#666;font-style:italic}
svg text{font-size:12px;fill:#333}svg text.small{font-size:10px}
.released{color:#1a7f37;font-weight:600}.unreleased{color:#b42318;font-weight:600}
"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(value: Any) -> str:
    """A cell: text left-aligned, numbers right-aligned."""
    cls = ' class="t"' if isinstance(value, str) else ""
    return f"<td{cls}>{escape(_cell(value))}</td>"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(data: ReportData) -> str:
    """The whole page as one HTML string (inline CSS and SVG only)."""
    inst, c = data.inst, data.counts
    version = c["released_version"]
    status = (f'<span class="released">released as v{version}</span>' if version
              else '<span class="unreleased">not released</span>')
    local = data.generated_at.astimezone(inst.tz)
    tiles = [("submissions", c["submissions"]), ("answers", c["answers"]), ("rejected rows", c["rejected_rows"]),
             ("graded by rule", c["graded_rule"]), ("graded by model", c["graded_llm"]),
             ("graded by human", c["graded_human"]), ("in review", c["in_review"]),
             ("deferred", c.get("deferred", 0)), ("pending model", c.get("pending_model", 0)),
             ("release", f"v{version}" if version else "none"), ("cost", f"${float(c['cost_usd']):,.4f}")]
    parts = [
        f"<h1>{escape(inst.name)}: exam day {data.day}</h1>",
        f'<p class="meta">Institution <code>{escape(inst.id)}</code>, time zone {escape(inst.timezone)}; {status}. '
        f"Generated {data.generated_at:%Y-%m-%d %H:%M} UTC ({local:%Y-%m-%d %H:%M} local).</p>",
        '<div class="tiles">' + "".join(f'<div class="tile"><b>{escape(_cell(v))}</b>{escape(k)}</div>'
                                        for k, v in tiles) + "</div>",
        _release_status_section(data),
        _states_section(data), _scores_section(data), _reasons_section(data), _tokens_section(data),
        _timings_section(data), _ingest_section(data), _agreement_section(data), _criteria_section(data),
        _audit_section(data), _thresholds_section(data),
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>GradeFlow report: {escape(inst.name)} {data.day}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _local(value: Any, tz: ZoneInfo) -> str:
    return f"{value.astimezone(tz):%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else "–"


def _release_status_section(data: ReportData) -> str:
    """Released to whom, or why not: nothing to release, a failed gate (its checks), still grading (counts by
    state), not published yet; for a released day, the students' side (exported, awaiting approval, ...)."""
    st, tz = data.release_status, data.inst.tz
    if not st:
        return ""
    state = st["state"]
    waiting = st.get("waiting") or {}
    open_work = ("; ".join(f"{label} {n:,}" for label, n in waiting.items()) + ".") if waiting else ""
    if state == "nothing_to_release":
        text = (f"<p class=\"unreleased\">Not released: nothing to release.</p><p>No answers were received for this "
                f"day ({st['submissions']:,} submissions, {st['rejected_rows']:,} rejected rows); an empty day is "
                "never released.</p>")
    elif state == "gate_failed":
        text = (f"<p class=\"unreleased\">Not released: the release gate failed (validation {st['validation_id']}, "
                f"{_local(st['at'], tz)} local).</p><p>Failed checks:</p><ul>"
                + "".join(f"<li><code>{escape(f)}</code></li>" for f in st["failures"]) + "</ul>"
                + (f"<p>Still open: {escape(open_work)}</p>" if open_work else ""))
    elif state == "grading":
        text = ("<p class=\"unreleased\">Not released: still grading.</p><p>No passing release gate yet, and answers "
                f"are still open: {escape(open_work)}</p>")
    elif state == "not_published":
        text = ("<p class=\"unreleased\">Not released yet: every answer has an outcome; the publish run has not "
                "released the day yet.</p>")
    else:
        text = _students_text(st, tz) + (f"<p>Released with open work (as pending): {escape(open_work)}</p>"
                                         if open_work else "")
    return "<h2>Release status</h2>" + text


def _students_text(st: dict, tz: ZoneInfo) -> str:
    students, v = st.get("students"), st["version"]
    lines = {
        "exported": f"students have v{v} since {_local(st.get('at'), tz)} local"
                    + (f", approved by {escape(str(st['approved_by']))}" if st.get("approved_by") else ""),
        "awaiting_approval": "students do not have it yet: awaiting faculty approval in the Airflow UI "
                             f"(asked {_local(st.get('at'), tz)} local; times out after "
                             f"{st.get('timeout_hours', 0):g} h)",
        "rejected": f"students do not have it: rejected by {escape(str(st.get('by')))} at "
                    f"{_local(st.get('at'), tz)} local",
        "approval_timed_out": f"students do not have it: no faculty decision in time ({_local(st.get('at'), tz)} "
                              "local); clear ask_faculty_approval to ask again",
        "scheduled": f"students get it at {_local(st.get('at'), tz)} local",
        "pending": "the students' copy is not written yet",
    }
    cls = "released" if students == "exported" else "unreleased"
    return (f'<p class="released">Released to the institution as v{v}.</p>'
            f'<p class="{cls}">Students (<code>student_release: {escape(str(st.get("student_release")))}</code>): '
            f"{lines.get(students, escape(str(students)))}.</p>")


def _ingest_section(data: ReportData) -> str:
    """Per file: received (S3), load started and finished (local), seconds, outcome and rows."""
    if not data.ingest:
        return "<h2>Ingest timings</h2><p class=\"note\">No file was ingested for this day.</p>"
    tz = data.inst.tz
    rows = [[f["file_name"], f["kind"], f["status"], _local(f["received"], tz), _local(f["started"], tz),
             _local(f["loaded"], tz), None if f["load_seconds"] is None else round(f["load_seconds"], 2),
             None if f["received_to_loaded_seconds"] is None else round(f["received_to_loaded_seconds"], 1),
             f["rows_loaded"], f["rows_rejected"], f["rows_duplicate"]] for f in data.ingest]
    timed = [f for f in data.ingest if f["load_seconds"] is not None]
    chart = hbar_chart("plot-ingest", "Load duration per file, in seconds",
                       [(f["file_name"], f["load_seconds"], "#4e79a7") for f in timed], " s") if timed else ""
    return ("<h2>Ingest timings</h2>" + chart
            + '<p class="meta">Received: when the file arrived in S3; loaded: when its rows were written (local '
              "time); duration: the load itself; received to loaded: how long it waited in incoming/ and loaded.</p>"
            + _table(["file", "kind", "status", "received", "load started", "loaded", "load s", "received to loaded s",
                      "rows loaded", "rejected", "duplicate"], rows))


def _states_section(data: ReportData) -> str:
    if not data.states:
        return "<h2>Answer states</h2><p class=\"note\">No answers were received for this day.</p>"
    items = [(s["state"], s["answers"], STATE_COLOURS.get(s["state"], "#999")) for s in data.states]
    total = sum(v for _, v, _ in items) or 1
    rows = [[label, value, f"{100 * value / total:.1f} %"] for label, value, _ in items]
    title = "Answers by state: graded by rule, model or human; in review; deferred; pending model; received"
    return ("<h2>Answer states</h2>" + hbar_chart("plot-states", title, items)
            + '<p class="meta">States as in docs/answer-lifecycle.md.</p>'
            + _table(["state", "answers", "share"], rows))


def _scores_section(data: ReportData) -> str:
    questions: dict[tuple, list[float]] = {}
    for row in data.scores:
        key = (row["exam_id"], row["question_id"], row["qtype"], row["max_points"])
        questions.setdefault(key, [0.0] * len(BINS))[row["bin"] - 1] += row["answers"]
    if not questions:
        return "<h2>Score distribution per question</h2><p class=\"note\">No grades yet.</p>"
    cells = []
    for i, ((exam, qid, qtype, points), counts) in enumerate(questions.items()):
        title = f"Score distribution of {exam} {qid} ({qtype}, {points:g} points)"
        chart = column_chart(f"plot-scores-{i}", title, list(BINS),
                             [("answers", counts, PALETTE[i % len(PALETTE)])])
        cells.append(f'<div class="q"><h3>{escape(exam)} · {escape(qid)} · {escape(qtype)} · {points:g} pt'
                     f"</h3>{chart}</div>")
    return ("<h2>Score distribution per question</h2><p class=\"meta\">Current grades, by share of the "
            "question's points.</p><div class=\"grid\">" + "".join(cells) + "</div>")


def _reasons_section(data: ReportData) -> str:
    if not data.reasons:
        return "<h2>Review reasons</h2><p class=\"note\">No answer is waiting in human review.</p>"
    top = data.reasons[:10]
    rest = sum(r["answers"] for r in data.reasons[10:])
    items = [(r["reason"], r["answers"], "#f28e2b") for r in top] + ([("other", rest, "#bbb")] if rest else [])
    return ("<h2>Review reasons</h2>" + hbar_chart("plot-reasons", "Answers in review by reason", items)
            + _table(["reason", "meaning", "answers"], [[r["reason"], r["description"], r["answers"]] for r in top]))


def _tokens_section(data: ReportData) -> str:
    if not data.jobs:
        return "<h2>Tokens and cost</h2><p class=\"note\">No Batch API job for this day.</p>"
    labels = [f"job {j['job_id']}/{j['attempt']}" for j in data.jobs]
    est = [float(j["est_input_tokens"] or 0) for j in data.jobs]
    actual_in = [float(j["input_tokens"] or 0) for j in data.jobs]
    actual_out = [float(j["output_tokens"] or 0) for j in data.jobs]
    chart = column_chart("plot-tokens", "Input tokens per batch job: estimated against actual, and output tokens",
                         labels, [("estimated input", est, "#bab0ac"), ("actual input", actual_in, "#4e79a7"),
                                  ("actual output", actual_out, "#59a14f")], width=max(360, 120 * len(labels)),
                         height=190)
    jobs = [[j["job_id"], j["attempt"], j["status"], j["request_count"], j["est_input_tokens"], j["input_tokens"],
             j["output_tokens"], j["cost_usd"]] for j in data.jobs]
    reqs = [[r["status"], r["requests"], r["answers"], r["est_tokens"], r["est_tokens_answered"], r["actual_tokens"],
             r["cost_usd"]] for r in data.request_tokens]
    return ("<h2>Tokens and cost</h2>" + chart
            + '<p class="meta">Legend: grey = estimated input, blue = actual input, green = actual output.</p>'
            + _table(["job", "attempt", "status", "requests", "est. input", "input", "output", "cost USD"], jobs)
            + "<p>Model requests (identical answers merged): estimated tokens (input + output) against actual.</p>"
            + _table(["status", "requests", "answers", "est. tokens", "est. (answered)", "actual tokens",
                      "cost USD"], reqs))


def _timings_section(data: ReportData) -> str:
    parts = ["<h2>Stage timings</h2>"]
    if data.timings:
        colours = dict(zip(STAGES, PALETTE, strict=False))
        items = [(f"{t['stage']} · {t['task']}", t["seconds"], colours.get(t["stage"], "#999")) for t in data.timings]
        parts.append(hbar_chart("plot-task-durations", "Airflow task durations of the day's runs, in seconds",
                                items, " s"))
        stages: dict[tuple, list[float]] = {}
        for t in data.timings:
            stages.setdefault((t["stage"], t["run_id"], t["run_state"]), []).append(t["seconds"])
        parts.append(_table(["stage", "Airflow run", "run state", "tasks", "task seconds (sum)"],
                            [[s, r, st, len(v), round(sum(v), 1)] for (s, r, st), v in stages.items()]))
    else:
        parts.append('<p class="note">No Airflow task timings (the report was written outside a publish run, '
                     "or Airflow had none for this day).</p>")
    rows = [(m["step"], m["started"], m["finished"], "#9c755f") for m in data.milestones if m["started"]]
    if rows:
        parts.append("<p>GradeFlow's own steps, from its records (local time):</p>")
        parts.append(timeline_chart("plot-timings", "GradeFlow steps of the day over time (local time)", rows,
                                    data.inst.tz))
        parts.append(_table(["step", "start (local)", "end (local)", "seconds"],
                            [[label, f"{t0.astimezone(data.inst.tz):%Y-%m-%d %H:%M:%S}",
                              f"{t1.astimezone(data.inst.tz):%Y-%m-%d %H:%M:%S}", round((t1 - t0).total_seconds(), 1)]
                             for label, t0, t1, _ in rows]))
    elif not data.timings:
        parts.append('<p class="note">Nothing ran for this day yet.</p>')
    return "".join(parts)


def _agreement_section(data: ReportData) -> str:
    if not data.agreement:
        return ("<h2>Model and human agreement</h2><p class=\"note\">No human grades yet: agreement appears "
                "once reviewers have scored answers the model also graded.</p>")
    items = [(str(a["question_id"]), float(a["exact_share"]) * 100, "#59a14f") for a in data.agreement]
    rows = [[a["question_id"], a["pairs"], float(a["mean_abs_diff"]), f"{100 * float(a['exact_share']):.1f} %"]
            for a in data.agreement]
    return ("<h2>Model and human agreement</h2>"
            + hbar_chart("plot-agreement", "Share of answers where model and human gave the same score", items, " %")
            + _table(["question", "pairs", "mean |model − human| (points)", "same score"], rows))


def _audit_figures(conn: psycopg.Connection, inst: Institution) -> dict:
    from gradeflow.release import audit

    return audit.audit_report(conn, inst)


def _audit_section(data: ReportData) -> str:
    """The accuracy of model grades released without a human, from all audits to date (routed work apart)."""
    found = data.audit
    head = "<h2>Audit: model grades released without a human</h2>"
    if not found:
        return head + '<p class="note">No audit figures.</p>'
    tol = found["tolerance_points"]
    items = found.get("items", {})
    meta = (f'<p class="meta">Every night a random sample of each question\'s unreviewed model grades '
            f'(audit_rate {found["audit_rate"]:g}, at least {found["audit_min_per_question"]} per question) goes '
            f"blind into the review packet; the reviewers' scores measure them. All audits to date: "
            f'{items.get("reviewed", 0)} scored, {items.get("open", 0)} waiting for a reviewer. 95% intervals: '
            f"Wilson for the share, bootstrap for the MAE. Routed work (reviewed because doubtful) apart.</p>")

    def ci(pair: list | None, fmt: str) -> str:
        return "–" if pair is None else f"[{pair[0]:{fmt}}, {pair[1]:{fmt}}]"

    def row(label: list, f: dict) -> list:
        share = None if f["within_tolerance"] is None else f"{100 * f['within_tolerance']:.1f} %"
        return [*label, f["n"], share, ci(f["within_tolerance_ci95"], ".1%"),
                f["mae"], ci(f["mae_ci95"], ".3f")]

    headers = ["", "question", "n", f"within ±{tol:g} pt", "95% interval", "MAE (points)", "95% interval"]
    rows = []
    for key, label in (("unreviewed_model", "audited (released unreviewed)"), ("routed", "routed to review")):
        part = found[key]
        rows.append(row([label, "all"], part["overall"]))
        rows += [row(["", f"{q['exam_id']}/{q['question_id']}"], q) for q in part["per_question"]]
    if not found["unreviewed_model"]["overall"]["n"]:
        meta += '<p class="note">No audited grade has been scored by a reviewer yet.</p>'
    return head + meta + _table(headers, rows)
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def _criteria_section(data: ReportData) -> str:
    if not data.criteria:
        return ""
    rows = [[c["question_id"], c["criterion"], c["n"], _pct(c["agreement"]),
             f"{_pct(c['ci_low'])} – {_pct(c['ci_high'])}", "–" if c["kappa"] is None else f"{c['kappa']:.2f}",
             _pct(c["model_met_share"]), _pct(c["human_met_share"])] for c in data.criteria]
    return ("<h2>Agreement per rubric criterion</h2><p class=\"meta\">The model's decision on each criterion "
            "against the reviewer's tick, on the answers a reviewer graded by rubric items.</p>"
            + _table(["question", "criterion", "answers", "same decision", "95% interval", "Cohen's kappa",
                      "model met", "reviewer met"], rows))


def _thresholds_section(data: ReportData) -> str:
    from gradeflow.release import calibration

    table = data.thresholds
    if not table:
        return ""
    head = (f"<h2>Choosing min_confidence</h2><p class=\"meta\">Exam days {escape(table['first_day'])} to "
            f"{escape(table['last_day'])}: review share of {table['population']} model-graded piece(s) of work; "
            f"accuracy (within {table['tolerance_points']:g} point(s) of the human score) of "
            f"{table['pairs']} human-scored model grade(s) (reviews and audits) at or above each threshold; "
            f"target {table['target_accuracy']:.0%} for the 95% lower bound. Current min_confidence "
            f"{table['min_confidence']:.2f}. docs/review-round-trip.md says how to read it.</p>")
    sentence = f"<p>{escape(calibration.recommendation_text(table, table['min_confidence']))}</p>"
    if not table["pairs"]:
        return head + sentence
    best = (table["recommended"] or {}).get("threshold")
    rows = [[f"{r['threshold']:.2f}" + (" (recommended)" if r["threshold"] == best else "")
             + (" (current)" if abs(r["threshold"] - table["min_confidence"]) < 1e-9 else ""),
             _pct(r["review_share"]), r["released_pairs"], _pct(r["accuracy"]),
             "–" if r["ci_low"] is None else f"{_pct(r['ci_low'])} – {_pct(r['ci_high'])}",
             "yes" if r["meets"] else "no"] for r in table["rows"] if r["released_pairs"] or r["threshold"] == 0]
    return head + sentence + _table(["min_confidence", "to review", "human-scored pairs released", "accuracy",
                                     "95% interval", "meets target"], rows)
