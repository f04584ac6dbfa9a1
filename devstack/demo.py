"""`make demo`: a whole sample exam day, through Airflow, on the embedded stack.

Starts the stack (PostgreSQL, S3, Batch API emulator), prepares Airflow's metadata database,
generates a realistic day for every sample institution and drops it into S3, then runs each
institution's DAGs with `dag.test()` at their scheduled local times: ingest (17:45), prepare
(18:00), grade (20:00) and publish (06:00 the next morning). The console shows one line per DAG
run (state and seconds) and a summary per institution; everything Airflow and the tasks log goes
to `demo-output/demo.log`. It leaves `demo-output/summary.json`, a copy of every exported release
under `demo-output/releases/<institution>/<exam day>/`, the daily HTML reports under
`demo-output/reports/`, the receipt of every submissions file (accepted submission ids with their recorded
`submitted_at`, counts, sha256) under `demo-output/receipts/` and every alert e-mail the local mail sink
received under `demo-output/mail/`
(the sample day's rejected files alert each institution, once per sweep; the demo lowers one institution's
`review_alert_share` so that its review-share alert is sent too, once per released version). An institution with
`student_release: after_faculty_approval` (lakeshore in the sample file) shows the faculty sign-off: each release
waits in Airflow for approval, and the demo's faculty member (`faculty.demo`) approves it through Airflow's HITL
REST API, as the UI's Required actions page would; the console and summary.json say who approved.

    python -m devstack.demo [--day 2026-11-23] [--submissions 300] [--institutions a,b] [--keep]
                            [--state-dir .devstack] [--output demo-output]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shutil
import sys
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

from devstack import stack

OUTPUT = stack.PROJECT_ROOT / "demo-output"
SCHEDULE = (("ingest", dtime(17, 45), 0), ("prepare", dtime(18, 0), 0), ("grade", dtime(20, 0), 0),
            ("publish", dtime(6, 0), 1))
log = logging.getLogger("gradeflow.demo")
ALERT_SHARE = 0.0001  # the demo's review_alert_share for one institution: any answer in review alerts


class Console:
    """The demo's own progress on the terminal, while every other byte (Airflow, tasks, subprocesses) goes
    to the log file: file descriptors 1 and 2 are pointed at the log, the terminal is kept on a duplicate."""

    def __init__(self) -> None:
        self.out = sys.stdout
        self._saved: list[int] = []

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def quiet(self, log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = [os.dup(1), os.dup(2)]
        self.out = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
        with open(log_path, "ab", buffering=0) as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield self
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(self._saved[0], 1)
                os.dup2(self._saved[1], 2)
                for fd in self._saved:
                    os.close(fd)
                self.out.close()
                self.out = sys.stdout


CONSOLE = Console()


def demo_institutions(state_dir: Path, alert_institution: str | None,
                      approval_institution: str | None = None, only: list[str] | None = None) -> tuple[Path, str]:
    """A copy of include/institutions.yaml with one institution's review_alert_share lowered (so the demo
    shows a review-share alert reaching the mail sink), and `approval_institution` (if given) set to
    `student_release: after_faculty_approval`; GRADEFLOW_INSTITUTIONS points at it for the demo only.

    `only` (the demo's `--institutions`): the copy lists just these institutions, so the DAG folder the demo runs
    makes only their DAGs (and the admin DAG). Every `dag.test()` parses the whole folder and writes each DAG it makes
    to Airflow's metadata database again: 5 DAGs instead of 13 for one institution. GradeFlow's own database keeps
    every institution (migrated before this file is used)."""
    import yaml

    source = stack.PROJECT_ROOT / "include" / "institutions.yaml"
    data = yaml.safe_load(source.read_text())
    if only and set(only) <= {e["id"] for e in data["institutions"]}:  # else get_institution names the known ids
        data["institutions"] = [e for e in data["institutions"] if e["id"] in only]
    alert_institution = alert_institution or sorted(e["id"] for e in data["institutions"])[-1]
    for entry in data["institutions"]:
        if entry["id"] == alert_institution:
            entry["review_alert_share"] = ALERT_SHARE
        if entry["id"] == approval_institution:
            entry.update(student_release="after_faculty_approval", faculty_approval_hours=1)
    path = Path(state_dir) / "demo-institutions.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, alert_institution


def prepare_environment(info: stack.StackInfo) -> None:
    """Export the stack's connections and Airflow settings; migrate Airflow's metadata DB and pool.

    The demo's Airflow metadata is its own (stack.AIRFLOW_DEMO_DB, home `airflow-demo/`): `make airflow`
    afterwards starts without the demo's past runs and Asset events (no past slot, no publish run at start)."""
    os.environ.update(stack.env(info, demo=True))
    os.environ.setdefault("GRADEFLOW_BATCH_POLL_SECONDS", "0.5")
    os.environ.setdefault("GRADEFLOW_RETRY_BACKOFF_SECONDS", "1")  # the demo's night is minutes long
    from devstack.airflow_cli import airflow_cli

    started = time.monotonic()  # in this process, which runs the DAGs next: no second and third Airflow import
    airflow_cli("db", "migrate")
    airflow_cli("pools", "set", "openai_batch_api", "4", "Batch API calls", "--include-deferred")
    log.info("Airflow metadata database ready in %.1fs", time.monotonic() - started)


def reset_data(info: stack.StackInfo) -> None:
    """Start from an empty GradeFlow database and bucket, so the demo shows one clean day."""
    import boto3

    with stack.connect_as(info, stack.OWNER_ROLE, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    stack.migrate(info)  # as the owner role: the night's tasks work as the worker role and never migrate
    stack.empty_bucket(boto3.client("s3", **stack.s3_client_kwargs(info)))


def drop_sample_day(info: stack.StackInfo, day: date, submissions: int, work: Path, insts: list) -> dict:
    """Generate the sample day and upload it under incoming/."""
    import boto3

    from devstack.sample_day import generate_day, upload_day

    shutil.rmtree(work, ignore_errors=True)
    manifest = generate_day(work, [i.id for i in insts], day, submissions_per_exam=submissions,
                            timezones={i.id: i.timezone for i in insts})
    keys = upload_day(work, boto3.client("s3", **stack.s3_client_kwargs(info)), stack.BUCKET)
    log.info("Dropped %d files for %d institutions into s3://%s/incoming/", len(keys), len(insts), stack.BUCKET)
    return manifest


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def freeze_after_full_collections() -> None:
    """From now on, what survives a full garbage collection is frozen (`gc.freeze`) and left out of the next ones.

    Airflow, Great Expectations, pandas and the DAGs make a heap of about a million objects that lives as long as the
    process, and Python's full collection walks all of it every time (13-18 of them, 6-9 s of a core in one e2e
    child): with this each full collection walks only what was allocated since the one before. The price: an object
    that survives a full collection and later becomes cyclic garbage is kept until the process ends."""
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def run_day(day: date, insts: list) -> list[tuple[str, str]]:
    """Run each institution's four DAGs at their local scheduled times; return (dag_id, state)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(stack.PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    states = []
    for inst in insts:
        for stage, at, days_after in SCHEDULE:
            local = datetime.combine(day + timedelta(days=days_after), at, ZoneInfo(inst.timezone))
            dag_id = f"{inst.id}__{stage}"
            started = time.monotonic()
            dag = bag.get_dag(dag_id)
            # Airflow 3.3.2's dag.test() fails on a successful run of a DAG with a deadline alert (it looks the
            # alert up by the alert itself instead of its stored id); the scheduler path is not affected.
            # The publish DAGs' release-deadline alerts are therefore left out of these in-process runs.
            dag.deadline = None
            run = dag.test(logical_date=local.astimezone(ZoneInfo("UTC")))
            state = str(getattr(run, "state", "unknown")).replace("DagRunState.", "")
            seconds = time.monotonic() - started
            log.info("%s at %s local: %s in %.1fs", dag_id, local.strftime("%Y-%m-%d %H:%M"), state, seconds)
            CONSOLE.say(f"  {dag_id:<28} {local.strftime('%Y-%m-%d %H:%M')} {inst.timezone:<18} "
                        f"{state:<8} {seconds:6.1f}s")
            states.append((dag_id, state))
    return states


FACULTY_USER = "faculty.demo"  # the Airflow user the demo's faculty sign-off is recorded under


@contextlib.contextmanager
def faculty(insts: list):
    """For institutions with `student_release: after_faculty_approval`, a faculty member who approves each
    release for students as it waits in Airflow (awaiting_input), through Airflow's HITL REST API."""
    if not any(i.needs_faculty_approval for i in insts):
        yield None
        return
    from devstack.hitl import Approver

    def said(done: dict) -> None:
        CONSOLE.say(f"    faculty sign-off ({done['dag_id']}): \"{done['subject']}\" approved by {done['user']} "
                    f"through Airflow's HITL API (HTTP {done['status']})")

    with Approver(FACULTY_USER, on_answer=said) as approver:
        yield approver


REVIEW_AT = (dtime(10, 0), dtime(10, 30))  # next morning, local: reviewers' file ingested, then published


STRICTER_ONE_IN = 6  # the simulated reviewers read about one answer in six more strictly than the rubric's words


def human_score(reference: str, answer: str, max_points: float, rubric_items: list[dict] | None = None) -> float:
    """A simulated reviewer's score of an answer, blind to the model: the emulator's reading of the answer against
    the rubric items (each decided, the score computed from them) or else the reference, in whole points (halves
    up), one point stricter for about one answer in STRICTER_ONE_IN (by a hash of the text: the same answer always
    gets the same score). It never reads the model's suggestion, so the audit figures measure a real difference."""
    import hashlib

    from devstack.batch_emulator import decide, grade
    from gradeflow.core.rubric import score_from_decisions

    if rubric_items:
        met = {d["id"]: d["met"] for d in decide(rubric_items, answer)["decisions"]}
        raw = score_from_decisions(rubric_items, met, max_points)[0]
    else:
        raw = grade(reference, answer, max_points)["score"]
    score = min(max_points, float(int(raw + 0.5)))
    if int(hashlib.sha256(answer.encode()).hexdigest(), 16) % STRICTER_ONE_IN == 0:
        score = max(0.0, score - 1)
    return score


def reviewers_file(packet_csv: bytes, reviewer: str) -> tuple[bytes, int]:
    """What reviewers send back for a packet, simulated: each item scored from the answer and the reference
    (`human_score`: the packet does not say whether an item was routed or audited, and the reviewers treat every
    row alike), plus two bad rows a real file may hold."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(packet_csv.decode("utf-8-sig"))))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["review_id", "score", "reviewer", "comment"])
    for row in rows:
        answer = row["answer_text"][1:] if row["answer_text"].startswith("'") else row["answer_text"]
        items = json.loads(row["rubric_items"]) if row.get("rubric_items") else None
        score = human_score(row["reference_answer"], answer, float(row["max_points"]), items)
        writer.writerow([row["review_id"], f"{score:g}", reviewer, "graded from the rubric"])
    writer.writerow(["rv-not-a-real-item", "1", reviewer, "a typo in the id"])
    if rows:
        writer.writerow([rows[0]["review_id"], "99", reviewer, "more than the question is worth"])
    return out.getvalue().encode(), len(rows)


def review_round_trip(info: stack.StackInfo, day: date, insts: list) -> dict:
    """Reviewers answer each institution's latest review packet; the ingest DAG loads their file and the
    publish DAG releases a new version with the human grades (as the reviews Asset would schedule it)."""
    import boto3
    from airflow.dag_processing.dagbag import DagBag

    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    bag = DagBag(str(stack.PROJECT_ROOT / "dags"))
    done: dict = {}
    for inst in insts:
        packets = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=stack.BUCKET, Prefix=inst.key(
            "reviews", day) + "/").get("Contents", []) if o["Key"].endswith(".csv"))
        if not packets:
            log.info("%s: no review packet, no reviews to send", inst.id)
            continue
        data, items = reviewers_file(s3.get_object(Bucket=stack.BUCKET, Key=packets[-1])["Body"].read(),
                                     f"reviewer@{inst.id}")
        key = inst.key("incoming", day, "reviews", "reviewers-1.csv")
        s3.put_object(Bucket=stack.BUCKET, Key=key, Body=data)
        log.info("%s: reviewers scored %d item(s) of %s and sent %s", inst.id, items, packets[-1], key)
        done[inst.id] = {"packet": packets[-1], "reviewers_file": key, "items_scored": items}
        for stage, at in zip(("ingest", "publish"), REVIEW_AT, strict=True):
            local = datetime.combine(day + timedelta(days=1), at, ZoneInfo(inst.timezone))
            dag = bag.get_dag(f"{inst.id}__{stage}")
            dag.deadline = None  # as in run_day: Airflow 3.3.2's dag.test() trips on deadline alerts
            run = dag.test(logical_date=local.astimezone(ZoneInfo("UTC")))
            done[inst.id][stage] = str(getattr(run, "state", "unknown")).replace("DagRunState.", "")
            log.info("%s__%s at %s local (after the reviews): %s", inst.id, stage, local.strftime("%Y-%m-%d %H:%M"),
                     done[inst.id][stage])
    return done


def review_summary(conn, inst, day: date, s3=None) -> dict:
    """The review loop's counts for summary.json: routed by reason, packets, reviews in, versions, agreement."""
    from gradeflow.core import db

    routed = dict(conn.execute("SELECT reason, count(*) FROM review_queue WHERE institution_id = %s "
                               "AND exam_day = %s GROUP BY reason ORDER BY reason", (inst.id, day)).fetchall())
    reviews = conn.execute("SELECT count(*), coalesce(sum(answers_graded), 0) FROM reviews WHERE institution_id = %s "
                           "AND exam_day = %s", (inst.id, day)).fetchone()
    items = dict(conn.execute("SELECT status, count(*) FROM review_items WHERE institution_id = %s AND exam_day = %s "
                              "GROUP BY status", (inst.id, day)).fetchall())
    rejected = conn.execute("SELECT count(*) FROM rejected_rows r JOIN ingested_files f USING (file_id) "
                            "WHERE r.institution_id = %s AND f.kind = 'reviews'", (inst.id,)).fetchone()[0]
    versions = [r[0] for r in conn.execute("SELECT version FROM published_releases WHERE institution_id = %s "
                                           "AND exam_day = %s ORDER BY version", (inst.id, day))]
    last = db.fetch_all(conn, "publish/last_release", {"inst": inst.id, "day": day})
    agreement = conn.execute("SELECT agreement -> 'overall' FROM releases WHERE release_id = %s",
                             (last[0]["release_id"],)).fetchone()[0] if last else None
    packets = [] if s3 is None else sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.BUCKET, Prefix=inst.key("reviews", day) + "/").get("Contents", []) if o["Key"].endswith(".csv"))
    students = [{"version": r[0], "students": r[1], "approved_by": r[2]} for r in conn.execute(
        "SELECT (details ->> 'version')::int, (details ->> 'students')::int, details ->> 'approved_by' FROM audit_log "
        "WHERE institution_id = %s AND exam_day = %s AND action = 'students_exported' ORDER BY at", (inst.id, day))]
    return {"routed_by_reason": routed, "review_packets": packets, "review_items": items, "reviews_applied": reviews[0],
            "answers_graded_by_human": int(reviews[1]), "review_rows_rejected": rejected,
            "released_versions": versions, "agreement": agreement, "student_release": inst.student_release,
            "students_copies": students, **audit_summary(conn, inst, day)}


def audit_summary(conn, inst, day: date) -> dict:
    """The audit sample for summary.json: the figures of all the institution's audits to date (n, share within
    tolerance_points, MAE, each with its 95% interval; routed work apart) and the day's review workload of
    free-text answers, routed and audited reported apart (docs/review-round-trip.md, "Review share")."""
    from gradeflow.core.config import FREE_TEXT_TYPES
    from gradeflow.release import audit

    free_text = conn.execute(
        "SELECT count(*) FROM answers a JOIN questions q ON q.institution_id = a.institution_id "
        "AND q.exam_id = a.exam_id AND q.question_id = a.question_id WHERE a.institution_id = %s "
        "AND a.exam_day = %s AND q.qtype = ANY(%s)", (inst.id, day, list(FREE_TEXT_TYPES))).fetchone()[0]
    routed = conn.execute("SELECT count(DISTINCT (submission_id, question_id)) FROM review_queue "
                          "WHERE institution_id = %s AND exam_day = %s", (inst.id, day)).fetchone()[0]
    items, audited = conn.execute(
        "SELECT count(DISTINCT i.review_id), count(DISTINCT (g.submission_id, g.question_id)) FROM review_items i "
        "JOIN grades g ON g.institution_id = i.institution_id AND g.custom_id = i.custom_id AND g.grader = 'llm' "
        "WHERE i.institution_id = %s AND i.exam_day = %s AND i.origin = 'audit'", (inst.id, day)).fetchone()

    def share(n: int) -> float | None:
        return round(n / free_text, 4) if free_text else None

    found = audit.audit_report(conn, inst)
    return {"review_share": {"free_text_answers": free_text, "routed_answers": routed, "routed_share": share(routed),
                             "audit_items": items, "audited_answers": audited, "audited_share": share(audited),
                             "share_with_audits": share(routed + audited)},
            "audit": {"items_today": items, "tolerance_points": found["tolerance_points"],
                      "unreviewed_model": found["unreviewed_model"]["overall"],
                      "routed": found["routed"]["overall"], "items_to_date": found["items"],
                      "per_question": found["unreviewed_model"]["per_question"]}}


def summarise(info: stack.StackInfo, day: date, insts: list, output: Path) -> dict:
    """Counts per institution and exam day, and local copies of the exported releases."""
    import boto3

    from gradeflow.airflow import tasks
    from gradeflow.grading import night as grading
    from gradeflow.release import publish

    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    summary: dict = {}
    for inst in insts:  # one connection per institution, as the worker role: it sees only its own rows
        with tasks.open_db(inst.id) as conn:
            counts = publish.day_counts(conn, inst, day)
            summary.setdefault(inst.id, {})[str(day)] = {
                "submissions": counts["submissions"], "answers": counts["answers"],
                "graded_rule": counts["graded_rule"], "graded_llm": counts["graded_llm"],
                "in_review": counts["in_review"], "deferred": counts["deferred"],
                "pending_model": counts["pending_model"], "received": counts["received"],
                "rejected_rows": counts["rejected_rows"],
                "released": counts["released_version"] is not None,
                "release_version": counts["released_version"], "cost_usd": round(float(counts["cost_usd"]), 4),
                "token_ledger": grading.ledger(conn, inst, day),
                "graded_human": counts["graded_human"], **review_summary(conn, inst, day, s3)}
            _copy_releases(s3, inst, day, output)
            _copy_releases(s3, inst, day, output, area="reports")
            summary[inst.id][str(day)]["receipts"] = _copy_releases(s3, inst, day, output, area="receipts")
            summary[inst.id][str(day)]["thresholds"] = _thresholds(conn, inst, day)
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _thresholds(conn, inst, day: date) -> dict:
    """The institution's threshold table over the day (gradeflow.release.calibration), compact for summary.json."""
    from gradeflow.release import calibration

    table = calibration.institution_table(conn, inst, day, day)
    return {k: table[k] for k in ("pairs", "population", "tolerance_points", "target_accuracy", "min_confidence",
                                  "recommended")} | {"at_min_confidence": next(
        (r for r in table["rows"] if abs(r["threshold"] - inst.min_confidence) < 1e-9), None)}


def _print_thresholds(summary: dict) -> None:
    """One line per institution: the accuracy at its min_confidence and the recommended one (make thresholds)."""
    print(f"\n{'thresholds':<12} {'pairs':>5}  at min_confidence: review share, accuracy [95% interval]; recommended")
    for inst, days in summary.items():
        for c in days.values():
            t = c.get("thresholds")
            if not t:
                continue
            row, best = t["at_min_confidence"] or {}, t["recommended"]
            acc = "-" if row.get("accuracy") is None else \
                f"{row['accuracy']:.1%} [{row['ci_low']:.1%}, {row['ci_high']:.1%}]"
            rec = (f"{best['threshold']:.2f} (review {best['review_share']:.1%})" if best
                   else "none (no threshold meets the target with the work it releases measured)")
            print(f"{inst:<12} {t['pairs']:>5}  {t['min_confidence']:.2f}: {row.get('review_share') or 0:.1%}, {acc}; "
                  f"{rec}")


def _copy_releases(s3, inst, day: date, output: Path, area: str = "releases") -> int:
    """Copy the day's objects under <area>/<prefix>/<day>/ (releases, reports or receipts) to
    <output>/<area>/<inst>/<day>/, sub-folders kept (the students' copy is under students/v<N>/); return how many."""
    prefix = inst.key(area, day) + "/"
    target = output / area / inst.id / str(day)
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            path = target / item["Key"][len(prefix):]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(stack.BUCKET, item["Key"], str(path))
            copied += 1
    return copied


def copy_mail(info: stack.StackInfo, output: Path, since: float) -> list[Path]:
    """Copy the alert e-mails the mail sink received during this demo to <output>/mail/."""
    target = output / "mail"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(info.mail_dir.glob("*.eml")):
        if path.stat().st_mtime >= since:
            copied.append(Path(shutil.copy2(path, target / path.name)))
    return copied


def _print_alerts(mails: list[Path]) -> None:
    from email import message_from_bytes, policy

    if not mails:
        print("\nAlerts: none delivered to the mail sink")
        return
    print(f"\nAlerts delivered to the local mail sink: {len(mails)}")
    for path in mails:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        print(f"  to {message['To']}: {message['Subject']}\n    {path}")


def _print_summary(summary: dict, states: list[tuple[str, str]], seconds: float, output: Path) -> None:
    print("\nGradeFlow demo: one exam day through Airflow on the embedded stack\n")
    # answers = rule + llm + human + review + waiting (the columns add up).
    print(f"{'institution':<12} {'day':<10} {'subm':>5} {'answers':>7} {'rule':>5} {'llm':>5} {'human':>5} "
          f"{'review':>6} {'waiting':>7} {'rejected':>8} {'released':>8}")
    for inst, days in summary.items():
        for day, c in days.items():
            print(f"{inst:<12} {day:<10} {c['submissions']:>5} {c['answers']:>7} {c['graded_rule']:>5} "
                  f"{c['graded_llm']:>5} {c['graded_human']:>5} {c['in_review']:>6} "
                  f"{c['deferred'] + c['pending_model'] + c['received']:>7} {c['rejected_rows']:>8} "
                  f"{'v' + str(c['release_version']) if c['released'] else 'no':>8}")
    print(f"\n{'token ledger':<12} {'est in':>9} {'actual in':>9} {'est out':>8} {'actual out':>10} "
          f"{'est/actual':>10} {'cost $':>8} {'waves':>5}  attempts")
    for inst, days in summary.items():
        for c in days.values():
            t = c["token_ledger"]
            print(f"{inst:<12} {t['est_input_tokens'] or 0:>9} {t['input_tokens']:>9} {t['est_output_tokens'] or 0:>8} "
                  f"{t['output_tokens']:>10} {t['est_actual_ratio'] or 0:>10} {t['cost_usd']:>8.4f} "
                  f"{t['waves'] or 0:>5}  {t['attempts']}")
    print(f"\n{'institution':<12} {'routed to review (answers, by reason)':<58} {'packets':>7} {'items':>5} "
          f"{'reviewed':>8} "
          f"{'human':>5} {'bad rows':>8} {'versions':>8}  agreement (n, r, QWK, MAE, changed)")
    for inst, days in summary.items():
        for _day, c in days.items():
            routed = ", ".join(f"{k} {v}" for k, v in c.get("routed_by_reason", {}).items()) or "none"
            a = c.get("agreement") or {}
            print(f"{inst:<12} {routed:<58} {len(c.get('review_packets', [])):>7} "
                  f"{sum(c.get('review_items', {}).values()):>5} "
                  f"{c.get('reviews_applied', 0):>8} {c.get('graded_human', 0):>5} "
                  f"{c.get('review_rows_rejected', 0):>8} "
                  f"{','.join('v' + str(v) for v in c.get('released_versions', [])):>8}  "
                  f"{a.get('n')}, {a.get('pearson_r')}, {a.get('qwk')}, {a.get('mae')}, {a.get('changed_share')}")
    print(f"\n{'audit':<12} {'free text':>9} {'routed':>11} {'audited':>11} {'n':>4}  within tolerance [95%], "
          "MAE [95%] of model grades released unreviewed")
    for inst, days in summary.items():
        for c in days.values():
            r, a = c.get("review_share", {}), c.get("audit", {})
            f = a.get("unreviewed_model") or {}
            if not r:
                continue
            figures = ("no audit scored yet" if not f.get("n") else
                       f"{f['within_tolerance']:.1%} [{f['within_tolerance_ci95'][0]:.1%}, "
                       f"{f['within_tolerance_ci95'][1]:.1%}], {f['mae']:.3f} [{f['mae_ci95'][0]:.3f}, "
                       f"{f['mae_ci95'][1]:.3f}]")
            print(f"{inst:<12} {r['free_text_answers']:>9} {r['routed_answers']:>5} {r['routed_share'] or 0:>5.1%} "
                  f"{r['audited_answers']:>5} {r['audited_share'] or 0:>5.1%} {f.get('n', 0):>4}  {figures}")
    print(f"\n{'institution':<12} {'student_release':<24} students' copies (version: students, approved by)")
    for inst, days in summary.items():
        for c in days.values():
            copies = ", ".join(f"v{x['version']}: {x['students']}"
                               + (f", approved by {x['approved_by']}" if x["approved_by"] else "")
                               for x in c.get("students_copies", [])) or "none"
            print(f"{inst:<12} {c.get('student_release', '?'):<24} {copies}")
    failed = [f"{d} ({s})" for d, s in states if "success" not in s]
    print(f"\nDAG runs: {len(states)}, failed: {failed or 'none'}; wall time {seconds:.0f}s")
    receipts = ", ".join(f"{inst} {c.get('receipts', 0)}" for inst, days in summary.items() for c in days.values())
    print(f"Wrote {output / 'summary.json'}, {output / 'releases'}/, the daily reports in {output / 'reports'}/ and "
          f"the receipts of every submissions file in {output / 'receipts'}/ (JSON and CSV: {receipts});"
          f" full Airflow and task logs in {output / 'demo.log'}")


def _close_airflow_connections() -> None:
    """Release Airflow's pooled metadata connections before the database stops under them."""
    if "airflow.settings" in sys.modules:
        sys.modules["airflow.settings"].dispose_orm()


def set_faults(info: stack.StackInfo, faults: dict) -> None:
    """Make the emulator misbehave the way real batches sometimes do, so the demo shows review routing."""
    import httpx

    httpx.post(f"http://127.0.0.1:{info.openai_port}/_emulator/faults", json=faults, timeout=10).raise_for_status()


DEMO_FAULTS = {"error_line_every": 150, "malformed_json_every": 401, "refusal_every": 997, "out_of_range_every": 313}


def _drop_only(args: argparse.Namespace) -> int:
    info = stack.status(args.state_dir)
    if info is None:
        raise SystemExit("the embedded stack is not running: start it with `make airflow` or `make stack-up`")
    from gradeflow.core.config import load_institutions

    manifest = drop_sample_day(info, args.day, args.submissions, Path(info.state_dir) / "sample-day",
                               list(load_institutions()))
    print(json.dumps({k: {f: v[f] for f in ("exams", "submissions", "answers", "bad_rows")}
                      for k, v in manifest.items()}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit non-zero if any DAG run failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--submissions", type=int, default=300, help="submissions per exam")
    parser.add_argument("--institutions", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--state-dir", type=Path, default=stack.DEFAULT_STATE_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true", help="keep the embedded stack running afterwards")
    parser.add_argument("--drop-only", action="store_true",
                        help="only generate the sample day and drop it into the running stack's S3 (for make airflow)")
    parser.add_argument("--faults", type=json.loads, default=DEMO_FAULTS,
                        help="Batch API emulator fault knobs as JSON ('{}' for none)")
    parser.add_argument("--alert-institution", default="",
                        help="institution whose review_alert_share the demo lowers so its review-share alert is "
                             "e-mailed (default: the last one run)")
    parser.add_argument("--approval-institution", default="",
                        help="institution whose students' release waits for the faculty's approval (the demo approves "
                             "it through Airflow's HITL API); default: as include/institutions.yaml says (lakeshore)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    freeze_after_full_collections()
    if args.drop_only:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        return _drop_only(args)
    args.output.mkdir(parents=True, exist_ok=True)
    log_path = args.output / "demo.log"
    log_path.write_bytes(b"")
    wanted = [x for x in args.institutions.split(",") if x]
    print(f"GradeFlow demo: {args.day}, {args.submissions} submissions per exam; full logs in {log_path}", flush=True)
    mail_since = time.time()
    with CONSOLE.quiet(log_path):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr,
                            force=True)
        CONSOLE.say("Starting the embedded stack (PostgreSQL, S3, Batch API emulator, mail sink) ...")
        info = stack.up(args.state_dir, emulator_timing_scale=0.05)
        try:
            reset_data(info)
            set_faults(info, args.faults)
            CONSOLE.say("Preparing Airflow's metadata database ...")
            prepare_environment(info)
            path, alert_inst = demo_institutions(Path(info.state_dir),
                                                 args.alert_institution or (wanted[-1] if wanted else None),
                                                 args.approval_institution or None, wanted)
            os.environ["GRADEFLOW_INSTITUTIONS"] = str(path)
            from gradeflow.core.config import get_institution, load_institutions

            insts = [get_institution(x) for x in wanted] if wanted else list(load_institutions())
            CONSOLE.say(f"Dropping a sample day for {', '.join(i.id for i in insts)} into S3 "
                        f"({alert_inst}'s review_alert_share lowered to {ALERT_SHARE} so its review-share alert "
                        "is sent) ...")
            drop_sample_day(info, args.day, args.submissions, Path(info.state_dir) / "sample-day", insts)
            CONSOLE.say("Running each DAG at its local scheduled time (dag.test):")
            with faculty(insts):
                states = run_day(args.day, insts)
                CONSOLE.say("Reviewers answer the review packets; ingest and publish run again the next morning:")
                for inst_id, done in review_round_trip(info, args.day, insts).items():
                    states += [(f"{inst_id}__{stage} (after reviews)", done[stage]) for stage in ("ingest", "publish")]
            summary = summarise(info, args.day, insts, args.output)
            mails = copy_mail(info, args.output, mail_since)
        finally:
            _close_airflow_connections()
            if not args.keep:
                stack.down(args.state_dir)
    _print_summary(summary, states, time.monotonic() - started, args.output)
    _print_thresholds(summary)
    _print_alerts(mails)
    return 0 if all("success" in s for _, s in states) else 1


if __name__ == "__main__":
    code = main()
    # Nothing is collected after this: the interpreter's shutdown otherwise runs full collections over the whole heap
    # while it tears the modules down (~10 s of wall time, 4-5 s of CPU, measured in the e2e test's run at load ~6).
    gc.freeze()
    sys.exit(code)
