"""Ingest: sweep an institution's incoming/ prefix into Postgres, file by file, in arrival order.

For each file: checksum; a file whose bytes were loaded before is recorded as a duplicate; exam
definitions are validated whole; submission rows are validated one by one, good rows staged with
COPY and upserted, bad rows written to `rejected_rows` and a rejects CSV. Only after the database
commit are the file's receipt written and the original copied to archive/ and removed from incoming/
(in a worker thread, while the next file loads), so a crash at any point loses nothing, a rerun loads
nothing twice, and a file committed but not archived gets its missing receipt and archive from the next sweep.

Files load in arrival order, each in its own transaction. A worker thread reads and checks the next submissions
file while one loads; a file read ahead that shares no submission and no checksum with the file still loading
starts on a second connection (`_Lanes`) while that one inserts its answers: neither can see, clash with or wait
on the other's rows, so each loads exactly as it would after the other. Anything else waits its turn.

A re-sent file counts as already loaded only for the rows that actually loaded: rows refused for a
reason that can change (an unknown exam or question) are read again, rows loaded before are counted
as duplicates and rejects already reported are not reported twice. One sweep per institution runs
at a time (an advisory lock, waited on for a bounded time), and every decision on a file is written
to the audit log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg.copy import LibpqWriter

from gradeflow.core import db, storage
from gradeflow.core.config import Institution
from gradeflow.core.text import spreadsheet_safe
from gradeflow.intake.contract import (
    FileRejected,
    IncomingPath,
    Reject,
    answer_sha256,
    parse_exam,
    parse_incoming_key,
    shown,
)
from gradeflow.intake.incoming import IncomingFile

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 30.0         # how long a sweep waits for another sweep of the same institution
FILE_LOCK_TIMEOUT = "30s"        # lock_timeout inside each file's transaction: no silent waits on rows


CHUNK_ROWS = 50_000              # rows validated and staged at a time: memory holds one chunk, not the file
CHUNK_CHARS = 16 * 1024 * 1024   # and at most about this many characters of values (long answers: fewer rows)
SPOOL_IN_MEMORY = 1024 * 1024   # a file read from S3 is kept in memory up to this size, then spooled to disk
ANALYSE_AFTER_ROWS = 10_000      # a sweep loading this many rows refreshes the statistics of the tables it filled
STAGE_WORK_MEM = "64MB"          # sorts and hashes over one file's stage stay in memory
INSERT_WORK_MEM = "128MB"        # and the rows the file's inserts hand to their reference checks (a transition table)
READ_AHEAD = True                # the next submissions file is read and checked while the current one loads
FINISH_BEHIND = True             # a committed file's receipt and archive are written while the next file loads
LANES = 2                        # connections a sweep loads files on at once (files that share no submission)
CHECKS_VERSION = 1               # of the row checks: raise it when a check accepts or says something else (then a
                                 # re-sent file is checked again even if nothing it waits on changed: _fingerprint)


class IngestBusy(RuntimeError):
    """Another session holds the institution's ingest lock; the message names its backend."""


@dataclass
class IngestReport:
    """What one sweep did, in counts (logged and returned to Airflow as a small manifest)."""

    institution: str
    files_seen: int = 0
    files_loaded: int = 0
    files_duplicate: int = 0
    files_rejected: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    failed: list[str] = field(default_factory=list)
    rejects_reports: list[str] = field(default_factory=list)  # this sweep's new rejects reports (S3 keys)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Outcome:
    status: str  # loaded | rejected | duplicate | resumed (only the archive step was left)
    total: int = 0
    loaded: int = 0
    duplicate: int = 0  # rows loaded before, or refused and reported before, by an earlier drop
    rejects: list[Reject] = field(default_factory=list)
    waiting: int = 0  # rows refused for a reason that can change (read again when the file is re-sent)
    duplicate_of: int | None = None
    note: str | None = None
    rejects_key: str | None = None  # the rejects report written for this drop, if any

    @property
    def row_rejects(self) -> int:
        return sum(1 for r in self.rejects if r.row is not None)


def ingest_institution(inst: Institution, conn: psycopg.Connection, s3) -> IngestReport:
    """Load every file waiting under incoming/<prefix>/; one bad file never stops the others.

    Files that failed for an unexpected reason (not bad content) are listed in `failed` and stay
    in incoming/ for the next sweep; the caller decides whether that fails the task.
    """
    with _sweep_lock(inst, conn):
        return _sweep(inst, conn, s3)


@contextmanager
def _sweep_lock(inst: Institution, conn: psycopg.Connection) -> Iterator[None]:
    """Hold the institution's session-level advisory lock for one sweep, waiting at most LOCK_WAIT_SECONDS.

    A session-level lock is released when its connection ends, so a killed worker frees it as soon
    as Postgres notices; until then the next sweep fails fast with the blocking backend's pid and
    state instead of waiting silently on its row locks.
    """
    from psycopg.pq import TransactionStatus

    params = {"inst": inst.id}  # the key: gradeflow_lock_key('ingest:<id>'), the institution's own (016)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not db.fetch_all(conn, "ingest/try_lock", params)[0]["locked"]:
        if time.monotonic() >= deadline:
            raise IngestBusy(_busy_message(inst, conn, params))
        time.sleep(min(1.0, max(0.05, LOCK_WAIT_SECONDS / 20)))
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            if conn.info.transaction_status != TransactionStatus.IDLE:  # leave a failed transaction first
                conn.rollback()
            db.fetch_all(conn, "ingest/unlock", params)


def _busy_message(inst: Institution, conn: psycopg.Connection, params: dict) -> str:
    holders = db.fetch_all(conn, "ingest/lock_holders", params)
    who = "; ".join(f"backend pid {h['pid']} ({h['application_name'] or 'no application name'}, {h['state']}"
                    f" since {h['state_change']}, user {h['usename']}, query: {shown(h['query'], 120)!r})"
                    for h in holders) or "a backend that has just ended"
    return (f"another ingest of {inst.id} holds its lock after {LOCK_WAIT_SECONDS:g} s: {who}. If that backend is "
            "left over from a killed task, end it with SELECT pg_terminate_backend(<pid>); the next sweep then runs")


def _sweep(inst: Institution, conn: psycopg.Connection, s3) -> IngestReport:
    report = IngestReport(inst.id)
    objects = storage.list_objects(s3, f"incoming/{inst.s3_prefix}/")
    # Exam definitions first, so submissions in the same drop can refer to them.
    ordered = sorted(objects, key=lambda o: (not o.key.endswith(".json") or "/exams/" not in o.key,
                                             o.last_modified, o.key))
    settled = _Settled(conn, inst, ordered)
    with _Ahead(inst, s3, ordered, settled) as ahead, _Behind(s3, report) as behind, \
            _Lanes(inst, conn, ordered) as lanes:
        for number, obj in enumerate(ordered, start=1):
            report.files_seen += 1
            lanes.wait_staged(ahead)  # the file before is staged (the worker reads this one now) or done
            turn = _Turn(number, obj, parse_incoming_key(obj.key), ahead, ahead.take(obj.key))
            lanes.run(turn, lambda lane_conn, turn=turn: _take_turn(inst, lane_conn, s3, turn, behind,
                                                                     len(ordered)))
        lanes.join()
        # Once per sweep, not per file: the night plans on real sizes (the rows committed, while the last file's
        # receipt and archive are still being written).
        if behind.loaded >= ANALYSE_AFTER_ROWS:
            with conn.transaction():
                _analyse(conn, "submissions", behind.loaded)
                _analyse(conn, "answers", behind.loaded)
        behind.settle(conn, wait=True)
    log.info("Ingest %s: %d files (%d loaded, %d duplicate, %d rejected, %d failed); rows %d loaded, "
             "%d rejected, %d duplicate", inst.id, report.files_seen, report.files_loaded, report.files_duplicate,
             report.files_rejected, len(report.failed), report.rows_loaded, report.rows_rejected,
             report.rows_duplicate)
    return report


def _take_turn(inst: Institution, conn: psycopg.Connection, s3, turn: _Turn, behind: _Behind, files: int) -> None:
    """One file on one lane's connection: the files finished before it are recorded, the file is loaded in its
    transaction and handed to _Behind (or reported failed: it stays in incoming/)."""
    behind.settle(conn)  # the files before it whose receipt and archive are written by now
    try:
        committed = _ingest_file(inst, conn, s3, turn)
    except Exception:
        conn.rollback()
        _failed(None, turn.obj.key)
        behind.skip(turn.number, turn.obj.key)  # listed in the report in the sweep's order
        return
    finally:
        turn.close()
    if committed.outcome.status in ("loaded", "duplicate") and turn.loads_submissions:
        turn.ahead.settled.add(turn.sha, turn.fingerprint, committed.outcome.waiting)
    behind.submit(turn.number, replace(committed, place=f"{turn.number}/{files}"))


def _failed(report: IngestReport | None, key: str) -> None:
    """A file failed for an unexpected reason (logged with its traceback): listed in the report (when given: else by
    _Behind, in the sweep's order), left in incoming/."""
    log.exception("Ingest of %s failed; it stays in incoming/ for the next sweep", key)
    if report is not None:
        report.failed.append(key)


def _count(report: IngestReport, outcome: _Outcome) -> None:
    if outcome.status == "resumed":
        return
    setattr(report, f"files_{outcome.status}", getattr(report, f"files_{outcome.status}") + 1)
    report.rows_loaded += outcome.loaded
    report.rows_rejected += outcome.row_rejects
    report.rows_duplicate += outcome.duplicate
    if outcome.rejects_key:
        report.rejects_reports.append(outcome.rejects_key)


def _ingest_file(inst: Institution, conn: psycopg.Connection, s3, turn: _Turn) -> _Committed:
    obj, parsed, checked = turn.obj, turn.parsed, turn.read_ahead  # read (and checked) while the file before loaded
    if checked is not None:
        data, sha = checked.data, checked.sha
    elif parsed is not None and _too_big(inst, parsed, obj):  # rejected unread: only its checksum is needed
        data, sha = io.BytesIO(), _streamed_sha256(s3, obj.key)
    else:  # streamed in 1 MiB blocks into a temporary file: past SPOOL_IN_MEMORY on disk, never held whole
        data, sha = storage.read_spooled(s3, obj.key, in_memory=SPOOL_IN_MEMORY)
    turn.sha = sha
    with data:
        return _ingest_spooled(conn, s3, IncomingFile(inst, obj, parsed,
                                                      parsed.exam_day if parsed else _today(inst), sha, data), turn)


def _too_big(inst: Institution, parsed: IncomingPath, obj: storage.S3Object) -> bool:
    """A submissions file over the institution's max_submission_bytes: rejected whole, never read."""
    return parsed.kind == "submissions" and (obj.size or 0) > inst.max_submission_bytes


def _streamed_sha256(s3, key: str) -> str:
    """The SHA-256 of an object read in 1 MiB blocks and kept nowhere (for a file rejected unread)."""
    digest = hashlib.sha256()
    for block in s3.get_object(Bucket=storage.bucket(), Key=key)["Body"].iter_chunks(chunk_size=1024 * 1024):
        digest.update(block)
    return digest.hexdigest()


def _ingest_spooled(conn: psycopg.Connection, s3, file: IncomingFile, turn: _Turn | None = None) -> _Committed:
    """Record and load one file in one transaction; return what is left once it committed (its receipt, gathered in
    the transaction, and the archive): _Behind finishes it, while the next file loads."""
    inst, obj, sha, name, day = file.inst, file.obj, file.sha, file.name, file.day
    archived_key = inst.key("archive", day, sha, name)
    file_row = {"inst": inst.id, "day": day, "key": obj.key, "name": name, "sha": sha, "size": obj.size,
                "last_modified": obj.last_modified, "kind": file.kind,
                "status": "loaded", "duplicate_of": None, "archived_key": None, "checked_with": None}
    receipt = None
    with conn.transaction():
        db.fetch_all(conn, "ingest/set_lock_timeout", {"timeout": FILE_LOCK_TIMEOUT})
        if file.kind == "submissions":  # what its rows are checked against, and its fingerprint (migration 033)
            file = replace(file, checks=(_known_questions(inst, conn), _rejected_exams(inst, conn)))
            file_row["checked_with"] = _fingerprint(inst, file.parsed, *file.checks)
            if turn is not None:
                turn.fingerprint = file_row["checked_with"]
        earlier = db.fetch_all(conn, "ingest/find_loaded_file", {"inst": inst.id, "sha": sha, "key": obj.key,
                                                                  "checked_with": file_row["checked_with"]})
        if earlier and earlier[0]["s3_key"] == obj.key and earlier[0]["archived_key"] is None:
            # Loaded and committed before, but what follows the commit was cut off: only finish it (the receipt
            # if it is missing, the archive).
            file_id, outcome = earlier[0]["file_id"], _Outcome("resumed")
            receipt = _resumed_receipt(conn, s3, inst, file_id)
        else:
            file_id, outcome = _classify_and_load(conn, file, file_row, earlier, turn)
            file = replace(file, file_id=file_id)
            _settle_resend(conn, file, outcome)
            rejects_key = outcome.rejects_key = _record_rejects(conn, s3, file, outcome)
            db.execute(conn, "ingest/update_file_counts", {
                "file_id": file_id, "inst": inst.id, "total": outcome.total, "loaded": outcome.loaded,
                "rejected": outcome.row_rejects, "duplicate": outcome.duplicate, "waiting": outcome.waiting,
                "rejects_key": rejects_key, "status": outcome.status, "duplicate_of": outcome.duplicate_of})
            _audit(conn, file, outcome, rejects_key)
            if file.kind == "submissions" and outcome.status in ("loaded", "rejected"):
                receipt = _gather_receipt(conn, file, file_row, outcome, rejects_key)
    return _Committed(inst, obj.key, file_id, archived_key, outcome, receipt)


@dataclass
class _Committed:
    """A file whose transaction committed, with what is left to do: write its receipt (if it has one), copy it to
    archive/ and remove it from incoming/ (in that order, `finish`, in _Behind's worker), then record the archive
    (`mark_archived`, on the sweep's connection). Until the archive is recorded, the file's row says it was cut off
    (archived_key NULL): a sweep that finds the file still in incoming/ only finishes it (_resumed_receipt)."""

    inst: Institution
    key: str
    file_id: int
    archived_key: str
    outcome: _Outcome
    receipt: _Receipt | None = None
    place: str = ""  # "<n>/<files in the sweep>", for the log

    def finish(self, s3) -> None:
        """The file's receipt, then its archive (S3 only: runs in _Behind's worker thread)."""
        try:
            if self.receipt is not None:
                self.receipt.write(s3)
            storage.archive(s3, self.key, self.archived_key)
        finally:
            self.close()

    def mark_archived(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            db.execute(conn, "ingest/mark_archived", {"file_id": self.file_id, "inst": self.inst.id,
                                                      "archived_key": self.archived_key})

    def close(self) -> None:
        if self.receipt is not None:
            self.receipt.close()


class _Behind:
    """What follows each file's commit (its receipt and archive: S3 requests and formatting) runs in one worker
    thread while the sweep's connections load the next files, so the database does not wait for it. Files are
    handed over in the sweep's order (a file committed on one lane before the file before it on the other waits
    here, not on its lane) and finished in that order; `settle` (between files, on a lane's connection) records
    each finished archive and counts the file in the report, or reports it failed exactly as a failure in its
    transaction would be (the same log line; the file stays in incoming/ and the next sweep finishes it). With
    FINISH_BEHIND off, each file is finished when it is handed over."""

    def __init__(self, s3, report: IngestReport) -> None:
        self.s3, self.report = s3, report
        self.pool = None
        self.jobs: list[tuple[_Committed, Any]] = []  # (file, Future of its finish)
        self.loaded = 0  # answer rows committed by the files handed over so far
        self.lock = threading.RLock()  # the lanes' threads hand files over and settle
        self.waiting: dict[int, tuple[_Committed | None, str]] = {}  # by number: files whose earlier ones are not in
        self.next = 1  # the number of the next file to hand over

    def __enter__(self) -> _Behind:
        return self

    def __exit__(self, *exc) -> None:
        for committed, future in self.jobs:  # a sweep cut short: what was started ends; the next sweep records it
            _wait_quietly(future)
            committed.close()
        self.jobs = []
        for committed, _key in self.waiting.values():
            if committed is not None:
                committed.close()
        if self.pool is not None:
            self.pool.shutdown()

    def submit(self, number: int, committed: _Committed) -> None:
        """Hand file `number` over once committed (it is finished after every file before it)."""
        with self.lock:
            self.loaded += committed.outcome.loaded
            self.waiting[number] = (committed, committed.key)
            self._release()

    def skip(self, number: int, key: str) -> None:
        """File `number` failed in its transaction (reported failed, in the sweep's order); nothing to finish."""
        with self.lock:
            self.waiting[number] = (None, key)
            self._release()

    def _release(self) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        while self.next in self.waiting:
            committed, key = self.waiting.pop(self.next)
            self.next += 1
            if committed is None:
                self.report.failed.append(key)
                continue
            if not FINISH_BEHIND:
                future = Future()
                try:
                    future.set_result(committed.finish(self.s3))
                except Exception as exc:
                    future.set_exception(exc)
            else:
                if self.pool is None:
                    self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradeflow-ingest-behind")
                future = self.pool.submit(committed.finish, self.s3)
            self.jobs.append((committed, future))

    def settle(self, conn: psycopg.Connection, wait: bool = False) -> None:
        """Record and count the files finished so far, in order (all of them, waiting, when `wait`)."""
        report = self.report
        with self.lock:
            while self.jobs and (wait or self.jobs[0][1].done()):
                committed, future = self.jobs.pop(0)
                try:
                    future.result()
                    committed.mark_archived(conn)
                except Exception:
                    conn.rollback()
                    _failed(report, committed.key)
                    continue
                outcome = committed.outcome
                _count(report, outcome)
                log.info("[%s] %s: %s (%d rows: %d loaded, %d rejected, %d duplicate)", committed.place,
                         committed.key, outcome.status, outcome.total, outcome.loaded, outcome.row_rejects,
                         outcome.duplicate)


def _wait_quietly(future) -> None:
    try:
        future.result()
    except Exception:
        log.warning("Finishing a file after its commit failed while the sweep stopped", exc_info=True)


def _gather_receipt(conn: psycopg.Connection, file: IncomingFile, file_row: dict, outcome: _Outcome,
                    rejects_key: str | None) -> _Receipt:
    """In the file's transaction: what its receipt says (the counts, and the submissions this file's insert loaded
    answers of, counted by insert_answers.sql into stage_loaded), the submissions sent by COPY as CSV into a
    temporary file. The receipt is written from it after the commit (_Receipt.write, while the next file loads)."""
    inst, file_id = file.inst, file.file_id
    receipt = _Receipt.of(inst, file_id, file_row["day"], file_row["name"], {
        "s3_key": file_row["key"], "sha256": file_row["sha"], "status": outcome.status, "rows": outcome.total,
        "answers_accepted": outcome.loaded, "rows_rejected": outcome.row_rejects, "rows_duplicate": outcome.duplicate,
        "rejects_key": rejects_key})
    if outcome.loaded:  # a file that loaded none has none (receipt_submissions.sql, over answers, finds none either)
        db.execute(conn, "bulk_plans")  # a file's submissions: bulk joins even on a new institution's stale statistics
        db.copy_out(conn, "ingest/receipt_loaded", {"inst": inst.id}, receipt.rows)
    return receipt


def _resumed_receipt(conn: psycopg.Connection, s3, inst: Institution, file_id: int) -> _Receipt | None:
    """The receipt of a committed file whose archive step was cut off, if any part of it is missing (the commit may
    have been followed by nothing at all): from what its transaction recorded, the submissions from answers by
    source file (receipt_submissions.sql: the same rows, in the same order, as receipt_loaded.sql found then), so
    it is the receipt the file would have had. A receipt already written is not written again."""
    [row] = db.fetch_all(conn, "ingest/receipt_file", {"inst": inst.id, "file_id": file_id})
    if row["kind"] != "submissions" or row["status"] not in ("loaded", "rejected"):
        return None
    receipt = _Receipt.of(inst, file_id, row["exam_day"], row["file_name"], {
        "s3_key": row["s3_key"], "sha256": row["sha256"], "status": row["status"], "rows": row["rows_total"],
        "answers_accepted": row["rows_loaded"], "rows_rejected": row["rows_rejected"],
        "rows_duplicate": row["rows_duplicate"], "rejects_key": row["rejects_key"]})
    receipt.parts = tuple(part for part in receipt.parts if not storage.exists(s3, f"{receipt.base}.{part}"))
    if not receipt.parts:
        receipt.close()
        return None
    if row["rows_loaded"]:
        text = io.TextIOWrapper(receipt.rows, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        db.execute(conn, "bulk_plans")
        for r in db.stream_rows(conn, "ingest/receipt_submissions", {"inst": inst.id, "file_id": file_id}):
            writer.writerow((r["submission_id"], r["student_id"], r["exam_id"], r["submitted_at"].isoformat(),
                             r["answers"]))
        text.detach()
    return receipt


# One submission of a receipt as json.dumps(item, indent=1) writes it two levels deep (each value by json.dumps: the
# same escapes; indent=1 itself runs Python's pure-Python encoder, ~3x slower). test_receipts checks the bytes.
# The texts go through the function json.dumps calls for a str (ensure_ascii, the default), the count is an int
# (json.dumps writes int.__repr__): the same bytes without json.dumps' own overhead, five times per submission.
_RECEIPT_ITEM = ('{\n   "submission_id": %s,\n   "student_id": %s,\n   "exam_id": %s,\n   "submitted_at": %s,\n'
                 '   "answers": %d\n  }')
_json_text = json.encoder.encode_basestring_ascii


class _Receipt:
    """The institution's confirmation of a submissions file: `receipts/<prefix>/<day>/<file>.<file_id>.json` and
    `.csv` (one per drop, like its rejects report, never overwritten).

    It lists every accepted submission id with the submitted_at GradeFlow recorded for it (and its answers
    from this file), the counts, the rejects report's key and the file's sha256. Gathered in the file's
    transaction (`head`; `rows`: the submissions as CSV in a temporary file, ordered by submission id), written
    after the commit by `write`, streamed through temporary files: memory does not follow the file's size.
    """

    def __init__(self, base: str, head: dict, parts: tuple[str, ...] = ("json", "csv")) -> None:
        import tempfile

        self.base, self.head, self.parts = base, head, parts
        self.rows = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()

    @classmethod
    def of(cls, inst: Institution, file_id: int, day, name: str, recorded: dict) -> _Receipt:
        """The receipt of file `name` (`file_id`) of `day`: its key, and its head in the order the JSON shows it
        (`recorded`: s3_key, sha256, status, the row counts and rejects_key, as the file's transaction recorded them),
        the same for a receipt gathered in the transaction and one written again by a later sweep."""
        head = {"institution_id": inst.id, "exam_day": str(day), "file": name, "s3_key": recorded["s3_key"],
                "sha256": recorded["sha256"], "file_id": file_id}
        head.update((k, recorded[k]) for k in ("status", "rows", "answers_accepted", "rows_rejected",
                                               "rows_duplicate", "rejects_key"))
        return cls(inst.key("receipts", day, f"{name}.{file_id}"), head)

    def write(self, s3) -> str:
        """Format the receipt from its rows and put its missing parts (both, unless resumed); return the JSON's key."""
        import tempfile
        from datetime import datetime

        head = dict(self.head)
        rejects_key = head.pop("rejects_key")
        name, sha = spreadsheet_safe(head["file"]), spreadsheet_safe(head["sha256"])
        self.rows.seek(0)
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as items, \
                tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as table:
            writer = csv.writer(table)
            writer.writerow(["submission_id", "student_id", "exam_id", "submitted_at", "answers", "file", "sha256"])
            count, before = 0, "\n  "
            for sid, student, exam, at, answers in csv.reader(io.TextIOWrapper(self.rows, encoding="utf-8",
                                                                               newline="")):
                at, answers = datetime.fromisoformat(at).isoformat(), int(answers)  # as psycopg's datetime writes it
                # json.dumps(receipt, indent=1) of the whole receipt, one submission at a time (two levels deep)
                items.write(before + _RECEIPT_ITEM % (_json_text(sid), _json_text(student), _json_text(exam),
                                                      _json_text(at), answers))
                writer.writerow((spreadsheet_safe(sid), spreadsheet_safe(student), spreadsheet_safe(exam),
                                 spreadsheet_safe(at), answers, name, sha))
                count, before = count + 1, ",\n  "
            whole = json.dumps({**head, "submissions_accepted": count, "rejects_key": rejects_key, "submissions": []},
                               indent=1)
            if "json" in self.parts:
                with tempfile.TemporaryFile() as receipt:  # the JSON: head, the items, the end, as UTF-8 bytes
                    receipt.write(whole.removesuffix("]\n}").encode())  # ends with `"submissions": [`
                    items.seek(0)
                    for block in iter(lambda: items.read(1 << 20), ""):
                        receipt.write(block.encode())
                    receipt.write(("\n ]\n}" if count else "]\n}").encode())
                    receipt.seek(0)
                    s3.put_object(Bucket=storage.bucket(), Key=f"{self.base}.json", Body=receipt,
                                  ContentType="application/json")
            if "csv" in self.parts:
                with tempfile.TemporaryFile() as data:
                    table.seek(0)
                    for block in iter(lambda: table.read(1 << 20), ""):
                        data.write(block.encode())
                    data.seek(0)
                    s3.put_object(Bucket=storage.bucket(), Key=f"{self.base}.csv", Body=data, ContentType="text/csv")
        return f"{self.base}.json"

    def close(self) -> None:
        self.rows.close()


def _settle_resend(conn: psycopg.Connection, file: IncomingFile, outcome: _Outcome) -> None:
    """Account for an earlier drop of the same bytes: rejects it reported are not reported again
    (their rows count as duplicates), and a drop that changes nothing is a duplicate of the first.

    `waiting` is counted before that filter: it says whether these bytes may still load rows later.
    """
    if outcome.status == "duplicate":
        return
    inst, file_id = file.inst, file.file_id
    outcome.waiting = sum(1 for r in outcome.rejects if r.row is not None and r.waits)
    before = outcome.row_rejects
    outcome.rejects = _new_rejects(conn, inst, file.sha, file_id, outcome.rejects)
    outcome.duplicate += before - outcome.row_rejects
    first = db.fetch_all(conn, "ingest/first_drop", {"inst": inst.id, "sha": file.sha, "file_id": file_id})
    if first and file.kind == "submissions" and outcome.status == "loaded" and not outcome.loaded \
            and not outcome.rejects:
        outcome.status, outcome.duplicate_of = "duplicate", first[0]["file_id"]


def _audit(conn: psycopg.Connection, file: IncomingFile, outcome: _Outcome, rejects_key: str | None) -> None:
    """One audit line per decision on a file: loaded, partly loaded, rejected or duplicate."""
    decision = outcome.status
    if decision == "loaded" and outcome.row_rejects:
        decision = "partly_loaded"
    file_reasons = [f"{r.field + ': ' if r.field else ''}{r.reason}" for r in outcome.rejects if r.row is None]
    db.audit(conn, "ingest", f"file_{decision}", file.inst.id, file.day, {
        "file": file.name, "key": file.key, "sha256": file.sha, "file_id": file.file_id,
        "kind": file.kind, "rows_total": outcome.total, "rows_loaded": outcome.loaded,
        "rows_duplicate": outcome.duplicate, "rows_rejected": outcome.row_rejects, "rows_waiting": outcome.waiting,
        "duplicate_of": outcome.duplicate_of, "rejects_key": rejects_key, "note": outcome.note,
        "reasons": file_reasons[:20]})


def _new_rejects(conn: psycopg.Connection, inst: Institution, sha: str, file_id: int,
                 rejects: list[Reject]) -> list[Reject]:
    """Drop the rejects already reported for the same bytes: a re-sent file reports only what is new."""
    if not rejects:
        return rejects
    seen = {(r["row_number"], r["field"], r["reason"])
            for r in db.fetch_all(conn, "ingest/earlier_rejects", {"inst": inst.id, "sha": sha, "file_id": file_id})}
    return [r for r in rejects if (r.row, r.field, r.reason) not in seen]


def _classify_and_load(conn: psycopg.Connection, file: IncomingFile, file_row: dict, earlier: list[dict],
                       turn: _Turn | None = None):
    """Record the file and load it, or record why it is a duplicate or cannot be read."""
    inst, obj, parsed = file.inst, file.obj, file.parsed
    name = file_row["name"]
    if earlier and earlier[0]["kind"] != file_row["kind"] and earlier[0]["s3_key"] != obj.key:
        earlier = []  # the same bytes as another kind of file (an exam dropped under submissions/): judged anew
    if earlier:  # every row of these bytes was loaded or refused for good by an earlier drop
        first = earlier[0]
        outcome = _Outcome("duplicate", total=first["rows_total"], duplicate=first["rows_total"],
                           waiting=first["rows_waiting"], duplicate_of=first["file_id"])  # waiting: a later drop
        return _insert_file(conn, {**file_row, "status": "duplicate", "duplicate_of": first["file_id"]}), outcome
    if parsed is None or parsed.kind == "unknown":
        file_id = _insert_file(conn, {**file_row, "status": "rejected"})
        return file_id, _Outcome("rejected", rejects=[Reject(name, None, None, None, _path_problem(obj.key))])
    if _too_big(inst, parsed, obj):
        file_id = _insert_file(conn, {**file_row, "status": "rejected"})
        most = inst.max_submission_bytes
        return file_id, _Outcome("rejected", rejects=[Reject(name, None, None, None, (
            f"the file is {obj.size:,} bytes ({obj.size / 1024 ** 2:,.1f} MiB); a submissions file of {inst.id} may "
            f"be at most {most:,} bytes ({most / 1024 ** 2:,.1f} MiB, its max_submission_bytes): split it into "
            "smaller files (any number of files per day)"))])
    file_id = _insert_file(conn, file_row)
    file = replace(file, file_id=file_id)
    if parsed.kind in ("exam", "reviews"):  # small files, read whole by their own readers
        loader = _load_exam if parsed.kind == "exam" else _load_reviews
        return file_id, loader(conn, file)
    return file_id, _load_submissions(conn, file, turn)


def _today(inst: Institution):
    from datetime import datetime

    return datetime.now(inst.tz).date()


def _path_problem(key: str) -> str:
    return ("not a recognised path: expected incoming/<institution>/<YYYY-MM-DD>/exams/<exam_id>.json or "
            f"incoming/<institution>/<YYYY-MM-DD>/submissions/<name>.csv|.jsonl|.parquet or "
            f"incoming/<institution>/<YYYY-MM-DD>/reviews/<name>.csv|.jsonl, got {key!r}")


def _insert_file(conn: psycopg.Connection, row: dict) -> int:
    return db.fetch_all(conn, "ingest/insert_file", row)[0]["file_id"]



def _record_rejects(conn: psycopg.Connection, s3, file: IncomingFile, outcome: _Outcome) -> str | None:
    """Write the rejects to rejected_rows and to a CSV beside the archive; return its key."""
    if not outcome.rejects:
        return None
    inst, file_id, day, name = file.inst, file.file_id, file.day, file.name
    rejects = outcome.rejects
    db.execute(conn, "ingest/insert_rejects", {
        "inst": inst.id, "day": day, "file_id": file_id, "files": [r.file for r in rejects],
        "rows": [r.row for r in rejects], "fields": [r.field for r in rejects], "values": [r.value for r in rejects],
        "reasons": [r.reason for r in rejects]})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "row", "field", "value", "reason"])
    writer.writerows([spreadsheet_safe(c) for c in (r.file, r.row, r.field, r.value, r.reason)]
                     for r in outcome.rejects)
    key = inst.key("rejects", day, f"{name}.{file_id}.rejects.csv")  # one report per drop, never overwritten
    storage.write_bytes(s3, key, buf.getvalue().encode(), "text/csv")
    return key


def _load_reviews(conn: psycopg.Connection, file: IncomingFile) -> _Outcome:
    """A reviewers' file: validated and applied by gradeflow.intake.review_files (the common steps stay here)."""
    from gradeflow.intake import review_files

    result = review_files.ingest_review_file(conn, file, file.data.read())
    return _Outcome(result.status, total=result.total, loaded=result.applied, rejects=result.rejects)


def _load_exam(conn: psycopg.Connection, file: IncomingFile) -> _Outcome:
    inst, parsed, file_id, name, data = file.inst, file.parsed, file.file_id, file.name, file.data.read()
    exam, rejects = parse_exam(name, data)
    if exam is None:
        return _Outcome("rejected", rejects=rejects)
    sha = hashlib.sha256(json.dumps(asdict(exam), sort_keys=True).encode()).hexdigest()
    found = db.fetch_all(conn, "ingest/find_exam", {"inst": inst.id, "exam_id": exam.exam_id})
    if found and found[0]["definition_sha256"] == sha:
        return _Outcome("loaded", note=f"exam {exam.exam_id} unchanged")  # the same definition again
    if found and found[0]["has_answers"]:
        reason = "this exam already has answers and its definition changed; regrade through the admin rerun DAG"
        return _Outcome("rejected", rejects=[Reject(name, None, "exam_id", exam.exam_id, reason)])
    from psycopg.types.json import Jsonb

    db.execute(conn, "ingest/upsert_exam", {"inst": inst.id, "exam_id": exam.exam_id, "day": parsed.exam_day,
                                            "title": exam.title, "sha": sha, "file_id": file_id})
    db.execute(conn, "ingest/delete_questions", {"inst": inst.id, "exam_id": exam.exam_id})
    with conn.cursor() as cur:
        cur.executemany(db.sql("ingest/insert_question"), [
            {**q, "inst": inst.id, "exam_id": exam.exam_id, "options": Jsonb(q["options"]),
             "answer_key": Jsonb(q["answer_key"]),
             "rubric_items": Jsonb(q["rubric_items"]) if q["rubric_items"] else None} for q in exam.questions])
    note = f"exam {exam.exam_id} {'redefined (it had no answers yet)' if found else 'defined'}"
    return _Outcome("loaded", note=note)  # counts are of answer rows; the exam is counted as a file


def _known_questions(inst: Institution, conn: psycopg.Connection) -> dict[str, set[str]]:
    known: dict[str, set[str]] = {}
    for row in db.fetch_all(conn, "ingest/known_questions", {"inst": inst.id}):
        known.setdefault(row["exam_id"], set()).add(row["question_id"])
    return known


def _rejected_exams(inst: Institution, conn: psycopg.Connection) -> dict[str, str]:
    """exam_id -> why its file `<exam_id>.json` was rejected (the latest rejection with a reason)."""
    return {row["file_name"].removesuffix(".json"):
            f"{row['file_name']} was rejected: {row['field'] + ': ' if row['field'] else ''}{row['reason']}"
            for row in db.fetch_all(conn, "ingest/rejected_exam_files", {"inst": inst.id})}


def _fingerprint(inst: Institution, parsed: IncomingPath, known: dict[str, set[str]],
                 rejected_exams: dict[str, str]) -> str:
    """What a submissions file's rows are checked against, as one SHA-256 (ingested_files.checked_with): the known
    questions and rejected exams, the day folder (the day window), the format (the reader), the institution's day
    window and zone, the contract's limits and CHECKS_VERSION. The same bytes with the same fingerprint give the
    same rows, good and refused, for the same reasons."""
    from gradeflow.intake import contract

    return hashlib.sha256(json.dumps({
        "checks": CHECKS_VERSION, "known": {exam: sorted(qs) for exam, qs in known.items()},
        "rejected_exams": rejected_exams, "day": str(parsed.exam_day),
        "format": parsed.name.rsplit(".", 1)[-1].lower() if "." in parsed.name else "",
        "window": inst.day_window_days, "zone": inst.timezone,
        "limits": [contract.MAX_ANSWER_CHARS, contract.MAX_ID_CHARS, str(contract.EARLIEST_SUBMISSION),
                   str(contract.LATEST_SUBMISSION), str(contract.MAX_UTC_OFFSET)]},
        sort_keys=True).encode()).hexdigest()


def _clash_rejects(conn: psycopg.Connection, inst: Institution, name: str, day,
                   keys: _FileKeys) -> tuple[list[Reject], bool]:
    """Staged rows that contradict what is already known, found set-wise and dropped from the stage:
    a submission_id given to another student or exam, or a second, different answer to the same
    question of the same submission.

    What was loaded first wins (an earlier file, then an earlier row); the same answer again is a
    harmless duplicate: dropped from the stage too (so each question of a submission is staged once) and
    counted as a duplicate, not a reject (the answers an earlier load holds are dropped before the ranking).
    Earlier loads are looked up only for the submissions this file shares with them; the flag says whether
    there are any. The owners come from the first rows of each chunk that `keys` wrote while the file was staged.
    """
    _copy_stage(conn, keys.firsts, _FIRSTS_COPY)
    db.execute(conn, "ingest/stage_owners", {"inst": inst.id, "day": day})
    loaded = db.fetch_all(conn, "ingest/any_owner_loaded")[0]["loaded"]
    may_clash = keys.may_clash and (keys.within or db.fetch_all(conn, "ingest/stage_clash_across_chunks")[0]["may"])
    if not loaded and not may_clash:  # nothing in the file clashes, nothing was loaded before: nothing to find
        return [], loaded
    db.execute(conn, "ingest/analyse_stage_answers")  # the ranking's joins and groupings plan on the stage's size
    db.execute(conn, "ingest/analyse_stage_owners")
    if loaded and db.execute(conn, "ingest/drop_loaded_twins", {"inst": inst.id}):  # rows loaded before, again
        db.execute(conn, "ingest/analyse_stage_answers")  # what is left of the stage
    rejects, twins = [], []
    for r in db.fetch_all(conn, "ingest/clashing_rows", {"inst": inst.id, "loaded": loaded}):
        if r["twin"]:  # the same answer again: not loaded twice, counted as a duplicate (staged, not loaded)
            twins.append(r["row_number"])
            continue
        if r["owner_clash"]:
            field_name = "student_id" if r["student_id"] != r["owner_student"] else "exam_id"
            where = "already loaded" if r["loaded"] else f"row {r['owner_row']}"
            rejects.append(Reject(name, r["row_number"], field_name, r[field_name],
                                  f"submission {r['submission_id']!r} belongs to student {r['owner_student']!r}, "
                                  f"exam {r['owner_exam']!r} ({where})"))
            continue
        first = (f"{r['loaded_file']} row {r['loaded_row']}" if r["loaded_row"] is not None
                 else f"{name} row {r['first_row']}")
        rejects.append(Reject(name, r["row_number"], "answer", r["answer_start"],
                              f"a different answer to {r['question_id']!r} of this submission was loaded "
                              f"first ({first}); the first one stands"))
    if rejects or twins:
        db.execute(conn, "ingest/drop_clashing_rows", {"rows": [r.row for r in rejects] + twins})
    return rejects, loaded


def _load_submissions(conn: psycopg.Connection, file: IncomingFile, turn: _Turn | None = None) -> _Outcome:
    """Validate and stage the file in chunks of CHUNK_ROWS rows (or CHUNK_CHARS characters), then load it with
    one statement per table.

    Memory holds one chunk of rows, not the file's rows; rows are checked column-wise
    (gradeflow.intake.columns), references set-wise (the known questions once per file, clashes with
    earlier rows and loads in one statement over the stage); the file's statements join only its own analysed
    temporary tables, and the tables it filled are analysed once at the end of the sweep (for the night's plans).
    A file the sweep read and checked ahead (`_Ahead`, with the same known questions) is only copied to the
    stage; once this file is staged, the next one is read and checked while this one loads.
    """
    from gradeflow.intake.columns import system_memory_pool  # pyarrow: imported when a file loads, not at DAG parse

    inst, parsed, file_id, name = file.inst, file.parsed, file.file_id, file.name
    known, rejected_exams = file.checks  # read by its transaction before anything else (_ingest_spooled)
    db.fetch_all(conn, "ingest/set_work_mem", {"work_mem": STAGE_WORK_MEM})
    db.execute(conn, "ingest/create_stage")
    checked = turn.checked(file.key, known, rejected_exams) if turn else None
    unreadable = None
    try:
        if checked is not None:
            total, staged, rejects, keys = checked.result()
            _copy_stage(conn, checked.copy)
        else:
            with system_memory_pool():  # freed memory goes back to the system between chunks (columns.py)
                total, staged, rejects, keys = _check_and_stage(conn, file, known, rejected_exams)
    except FileRejected as exc:  # nothing of the file reaches the tables: the stage is dropped at commit
        unreadable = str(exc)
        keys = None
    if turn:
        turn.staged(file.key, known, rejected_exams, keys)
    if unreadable is not None:
        return _Outcome("rejected", rejects=[Reject(name, None, None, None, unreadable)])
    try:
        clashed, shared = _clash_rejects(conn, inst, name, parsed.exam_day, keys)
    finally:
        keys.close()
    staged -= len(clashed)
    rejects += clashed
    rejects.sort(key=lambda r: r.row or 0)
    params = {"inst": inst.id, "day": parsed.exam_day, "file_id": file_id, "loaded": shared}
    # The inserts' statement-level reference checks (migrations 020, 032) read every inserted row from a transition
    # table, which PostgreSQL keeps in work_mem and past it writes to a temporary file that each of the three checks
    # of answers reads back: a 200,000-row file's rows take 64-96 MB there (docs/performance.md, "Ingest time").
    db.fetch_all(conn, "ingest/set_work_mem", {"work_mem": INSERT_WORK_MEM})
    db.execute(conn, "ingest/insert_submissions", params)  # before the answers, which refer to them
    db.execute(conn, "ingest/insert_answers", params)  # and counts what it loaded per submission (stage_loaded)
    loaded = db.fetch_all(conn, "ingest/loaded_answers")[0]["loaded"]
    return _Outcome("loaded", total=total, loaded=loaded, duplicate=staged - loaded, rejects=rejects)


def _check_rows(file: IncomingFile, known: dict[str, set[str]], rejected_exams: dict[str, str],
                stage) -> tuple[int, int, list[Reject], _FileKeys]:
    """Read and check a submissions file a chunk at a time (columns.validate_chunks, then the day window) and hand
    each chunk's good rows to `stage`, which stages them and says how many: (rows read, rows staged, rejects, what
    the staged rows' keys say about clashes). Raises FileRejected when the file cannot be read (possibly after some
    chunks were staged)."""
    from gradeflow.intake.columns import validate_chunks

    inst, parsed, name, data = file.inst, file.parsed, file.name, file.data
    total = staged = 0
    rejects: list[Reject] = []
    keys = _FileKeys()
    try:
        for chunk in validate_chunks(name, data, known, rejected_exams, CHUNK_ROWS, CHUNK_CHARS):
            total += chunk.rows
            good, far = _outside_day_window(inst, parsed.exam_day, name, chunk.good)
            rejects += chunk.rejects + far
            staged += stage(good)
            keys.add(good)  # after the stage's text is written and let go: the two never hold memory at once
            chunk = good = far = None  # let go before the next chunk is read: one chunk in memory, not two
    except BaseException:
        keys.close()
        raise
    return total, staged, rejects, keys


class _FileKeys:
    """What a file's staged rows say about clashes and owners, found while they are staged (Arrow's hash grouping of
    each chunk, in the read-ahead worker when the file is read ahead; nothing kept per row):

    * `within`: whether a chunk gives a question of a submission twice (a different answer, or a twin), or a
      submission two different students or exams. A file of one chunk where neither happens cannot clash; for a
      file of several chunks, stage_clash_across_chunks.sql asks the same of the submissions continued across
      chunks (from the first rows below). When nothing can clash and no submission was loaded before,
      clashing_rows.sql has nothing to find, and it is not run (nor the stage's ANALYZE it needs).
    * `firsts`: each chunk's first row of each of its submissions (row_number, submission_id, student_id, exam_id,
      submitted_at) as COPY text in a temporary file (as the stage's text read ahead): copied beside the
      stage (stage_firsts), so stage_owners.sql sorts a row per submission and chunk instead of every staged row.
    """

    def __init__(self) -> None:
        import tempfile

        self.chunks = 0
        self.within = False
        self.hashes: list = []  # per chunk: hash() of each of its submission ids (numpy int64), for _Lanes
        self.unique = None
        self.firsts = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close(); on disk: no memory per chunk

    def add(self, good) -> None:
        if not good.num_rows:
            return
        import pyarrow.compute as pc

        self.chunks += 1
        subs = good.group_by("submission_id", use_threads=False).aggregate([
            ("row_number", "min"), ("student_id", "count_distinct"), ("exam_id", "count_distinct")])
        if not self.within:
            self.within = _distinct(good, "submission_id", "question_id") < good.num_rows \
                or pc.max(subs.column("student_id_count_distinct")).as_py() > 1 \
                or pc.max(subs.column("exam_id_count_distinct")).as_py() > 1
        firsts = good.select(_FIRST_COLUMNS).filter(pc.is_in(good.column("row_number"),
                                                             value_set=subs.column("row_number_min")))
        import numpy as np

        ids = subs.column("submission_id").to_pylist()
        self.hashes.append(np.fromiter(map(hash, ids), np.int64, len(ids)))
        self.unique = None
        subs = None
        for piece in _csv_pieces(firsts):
            self.firsts.write(piece)

    @property
    def may_clash(self) -> bool:
        """Whether the rows may clash as far as the chunks alone tell: a chunk clashes within itself, or the file
        has several chunks (then stage_clash_across_chunks.sql decides)."""
        return self.within or self.chunks > 1

    def submission_hashes(self):
        """The distinct hash() values of the staged rows' submission ids (sorted numpy int64)."""
        import numpy as np

        if self.unique is None:
            self.unique = np.unique(np.concatenate(self.hashes)) if self.hashes else np.empty(0, np.int64)
            self.hashes = [self.unique]
        return self.unique

    def close(self) -> None:
        self.firsts.close()


_FIRST_COLUMNS = ["row_number", "submission_id", "student_id", "exam_id", "submitted_at"]


def _csv_pieces(table, rows: int = 10_000) -> Iterator[memoryview]:
    """COPY text (CSV written by Arrow, as the stage's) of a table, `rows` rows at a time."""
    for batch in table.to_batches(max_chunksize=rows):
        yield _copy_text(batch)


def _copy_text(table) -> memoryview:
    """A table's rows as the CSV text our COPY ... (FORMAT csv) statements read: no header, every value quoted
    (written by Arrow)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    for i, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type):
            table = table.set_column(i, column.name, _iso_utc(table.column(i)))
    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return memoryview(out.getvalue())


def _iso_utc(column):
    """A timestamp column (UTC in Arrow) as ISO 8601 text in UTC to the microsecond (`2026-11-23T14:05:00.000000Z`,
    the same instant the database reads from Arrow's own text): numpy formats it ~10x faster than Arrow's CSV
    writer, which spent 95 % of a stage piece's text on this one column (0.23 of 0.25 s per 200,000 rows)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)  # UTC instants, NaT for nulls
    text = np.char.add(np.datetime_as_string(values, unit="us"), "Z")
    return pa.array(text, pa.string(), mask=column.is_null().to_numpy(zero_copy_only=False))


def _distinct(table, *columns: str) -> int:
    """How many distinct combinations of these columns a table holds (Arrow's hash grouping)."""
    return table.select(list(columns)).group_by(list(columns), use_threads=False).aggregate([]).num_rows


@dataclass
class _Checked:
    """A submissions file read from S3 and checked ahead of its turn: its spooled bytes and checksum, the stage's
    COPY text of its good rows (a temporary file), its counts and rejects; or why it could not be read
    (`unreadable`, FileRejected's message) or what failed (`error`: the file is then read again in its turn)."""

    key: str
    known: dict[str, set[str]]
    rejected_exams: dict[str, str]
    data: Any = None
    sha: str | None = None
    copy: Any = None
    total: int = 0
    staged: int = 0
    rejects: list[Reject] = field(default_factory=list)
    keys: _FileKeys | None = None
    unreadable: str | None = None
    error: BaseException | None = None
    settled: bool = False  # not checked: an earlier drop of these bytes settles it (_Settled)

    def result(self) -> tuple[int, int, list[Reject], _FileKeys]:
        """What _check_rows returned for the file, or the FileRejected it raised."""
        if self.unreadable is not None:
            raise FileRejected(self.unreadable)
        return self.total, self.staged, self.rejects, self.keys

    def close(self) -> None:
        for f in (self.data, self.copy, self.keys):
            if f is not None:
                f.close()


def _check_ahead(ahead: _Ahead, obj: storage.S3Object, parsed: IncomingPath, known: dict[str, set[str]],
                 rejected_exams: dict[str, str]) -> _Checked:
    """In the read-ahead thread: read a submissions file from S3, check it as _load_submissions would with these
    known questions and write its good rows' COPY text to a temporary file. Touches no database connection."""
    import tempfile

    inst, s3, settled = ahead.inst, ahead.s3, ahead.settled
    checked = _Checked(obj.key, known, rejected_exams)
    try:
        checked.data, checked.sha = storage.read_spooled(s3, obj.key, in_memory=SPOOL_IN_MEMORY)
        if settled.covers(checked.sha, _fingerprint(inst, parsed, known, rejected_exams)):
            checked.settled = True  # its transaction finds the drop that settles it (or reads it in its turn)
            log.debug("Read %s ahead: settled by an earlier drop of the same bytes, not checked", obj.key)
            return checked
        checked.copy = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _Checked.close

        def stage(good) -> int:
            for piece in _stage_text(good):
                checked.copy.write(piece)
            return good.num_rows

        try:
            file = IncomingFile(inst, obj, parsed, parsed.exam_day, checked.sha, checked.data)  # as in its turn
            checked.total, checked.staged, checked.rejects, checked.keys = _check_rows(file, known, rejected_exams,
                                                                                       stage)
        except FileRejected as exc:
            checked.unreadable = str(exc)
        checked.copy.seek(0)
    except Exception as exc:  # read again in its turn, where a failure is handled as for any file
        checked.error = exc
    log.debug("Read %s ahead: %d rows, %d staged, %d rejects%s", obj.key, checked.total, checked.staged,
              len(checked.rejects), f" ({checked.unreadable or checked.error})" if checked.unreadable
              or checked.error else "")
    return checked


class _Settled:
    """The drops that settle a later drop of the same bytes (find_loaded_file.sql): their checksums when no row of
    theirs waits, else (checksum, fingerprint). Read at the start of a sweep for the days of its files and added to
    as its files commit; the read-ahead worker does not check a file they settle. Only a hint: each file's
    transaction decides, and a file not checked ahead is checked in its turn."""

    def __init__(self, conn: psycopg.Connection, inst: Institution, ordered: list[storage.S3Object]) -> None:
        self.lock = threading.Lock()
        self.shas: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()
        days = sorted({p.exam_day for o in ordered if (p := parse_incoming_key(o.key)) is not None
                       and p.kind == "submissions"})
        if days:
            for row in db.fetch_all(conn, "ingest/settled_drops", {"inst": inst.id, "days": days}):
                self.add(row["sha256"], row["checked_with"], 0 if row["settled"] else 1)

    def add(self, sha: str | None, fingerprint: str | None, waiting: int) -> None:
        with self.lock:
            if sha is not None and not waiting:
                self.shas.add(sha)
            elif sha is not None and fingerprint is not None:
                self.pairs.add((sha, fingerprint))

    def covers(self, sha: str, fingerprint: str) -> bool:
        with self.lock:
            return sha in self.shas or (sha, fingerprint) in self.pairs


class _Ahead:
    """One file read ahead: while a submissions file loads (its statements run in the database), a worker thread
    reads the next file of the sweep from S3 and checks it (Python and Arrow work), so the two overlap on two
    cores. Only the file right after a submissions file is read ahead, only when it is a submissions file under
    the size limit, and only after the current file is staged: one file is checked at a time (memory holds one
    chunk, as without it). Its result is used only with the same known questions and rejected exams that the
    file's own transaction reads (else, or when the worker failed, the file is read again in its turn)."""

    def __init__(self, inst: Institution, s3, ordered: list[storage.S3Object], settled: _Settled) -> None:
        self.inst, self.s3, self.settled = inst, s3, settled
        self.following = {obj.key: nxt for obj, nxt in zip(ordered, ordered[1:], strict=False)}
        self.pool = self.memory = None
        self.job: tuple[str, Any] | None = None  # (key, Future of _Checked)
        self.lock = threading.Lock()  # start_after runs on the lanes' threads, take on the sweep's
        self.started: set[str] = set()  # the keys read ahead so far

    def __enter__(self) -> _Ahead:
        return self

    def __exit__(self, *exc) -> None:
        if self.job is not None:
            self._result(self.job[1]).close()
            self.job = None
        if self.pool is not None:
            self.pool.shutdown()
        if self.memory is not None:
            self.memory.__exit__(None, None, None)

    def start_after(self, key: str, known: dict[str, set[str]], rejected_exams: dict[str, str]) -> None:
        """Read and check the file after `key` in the worker, if it is a submissions file to be read."""
        nxt = self.following.get(key)
        parsed = parse_incoming_key(nxt.key) if nxt is not None else None
        with self.lock:
            if not READ_AHEAD or self.job is not None or parsed is None or parsed.kind != "submissions" \
                    or _too_big(self.inst, parsed, nxt) or nxt.key in self.started:
                return
            self.started.add(nxt.key)  # once: a lane's file staged after the worker moved past its next one
            self._start(nxt, parsed, known, rejected_exams)

    def _start(self, nxt: storage.S3Object, parsed: IncomingPath, known: dict[str, set[str]],
               rejected_exams: dict[str, str]) -> None:
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            from gradeflow.intake.columns import system_memory_pool

            self.memory = system_memory_pool()  # the worker's chunks too come from (and go back to) the system
            self.memory.__enter__()
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradeflow-ingest-ahead")
        self.job = (nxt.key, self.pool.submit(_check_ahead, self, nxt, parsed, known, rejected_exams))

    def take(self, key: str) -> _Checked | None:
        """The file read ahead, if it is this one (waiting for the worker); None when it was not, or failed."""
        with self.lock:
            job = self.job
            if job is None or job[0] != key:
                return None
            self.job = None
        checked = self._result(job[1])
        if checked.error is not None or checked.data is None:
            log.warning("Reading %s ahead failed (%r); it is read again now", key, checked.error)
            checked.close()
            return None
        # The file after it is read now, with the same known questions and rejected exams (a submissions file does
        # not change them; each file's transaction compares): the worker never waits for a lane to stage a file.
        self.start_after(key, checked.known, checked.rejected_exams)
        return checked

    def reading(self, key: str | None) -> bool:
        """Whether the file after `key` is being read ahead (or was, and is not taken yet)."""
        nxt = self.following.get(key) if key is not None else None
        with self.lock:
            return nxt is not None and self.job is not None and self.job[0] == nxt.key

    @staticmethod
    def _result(future) -> _Checked:
        try:
            return future.result()
        except Exception as exc:  # _check_ahead keeps its errors; anything else: the file is read in its turn
            return _Checked("", {}, {}, error=exc)


class _Turn:
    """One file's turn in the sweep: the file (and what the worker read ahead of it), and what its lane tells the
    sweep once the file is staged: its checksum and its submissions (to decide whether the next file may load on
    the other lane meanwhile); `settled` is set then, or when the turn ends without staging anything."""

    def __init__(self, number: int, obj: storage.S3Object, parsed: IncomingPath | None, ahead: _Ahead,
                 read_ahead: _Checked | None) -> None:
        self.number, self.obj, self.parsed, self.ahead, self.read_ahead = number, obj, parsed, ahead, read_ahead
        self.sha: str | None = read_ahead.sha if read_ahead is not None else None
        self.submissions = None  # numpy array of the staged submissions' hashes (_FileKeys.submission_hashes)
        self.beside: list = []  # the Futures of the files loading when this one started (_Lanes.run)
        self.fingerprint: str | None = None  # what its rows are checked against (_fingerprint; submissions files)
        self.settled = threading.Event()

    @property
    def loads_submissions(self) -> bool:
        return self.parsed is not None and self.parsed.kind == "submissions"

    def checked(self, key: str, known: dict[str, set[str]], rejected_exams: dict[str, str]) -> _Checked | None:
        """The worker's result for the file when it was checked with these very known questions and rejected
        exams (its transaction's); None otherwise (the caller checks the file itself)."""
        checked = self.read_ahead
        if checked is None or checked.settled or checked.key != key or checked.known != known \
                or checked.rejected_exams != rejected_exams:
            # Checked again now, its rows may name other submissions than the worker saw: not beside another file.
            from concurrent.futures import wait

            wait(self.beside)
            return None
        return checked

    def staged(self, key: str, known: dict[str, set[str]], rejected_exams: dict[str, str],
               keys: _FileKeys | None) -> None:
        """The file is staged: the worker reads the next file now, and the sweep may start it on another lane."""
        if keys is not None:
            self.submissions = keys.submission_hashes()
        self.ahead.start_after(key, known, rejected_exams)
        self.settled.set()

    def close(self) -> None:
        self.settled.set()
        if self.read_ahead is not None:
            self.read_ahead.close()


class _Lanes:
    """The connections a sweep loads files on: its own, and (LANES > 1, a drop of two submissions files or more)
    one more made the same way (db.sibling), each with one thread. Files are started in the sweep's order; a
    submissions file starts while the file before it is still loading (inserting its answers, on the other
    lane) only when its rows were read ahead and share no submission and no checksum with any file still
    loading: then neither file's transaction can see, clash with or wait on the other's rows, and each file
    is loaded exactly as it would be alone after the other. Any other file waits until every lane is idle.
    Each file is still one transaction; file ids, receipts and the report follow the sweep's order."""

    def __init__(self, inst: Institution, conn: psycopg.Connection, ordered: list[storage.S3Object]) -> None:
        self.conns, self.own = [conn], []
        self.pools: list = []
        self.running: list[tuple[_Turn, Any]] = []  # (turn, Future of its job)
        self.last: tuple[_Turn, Any] | None = None
        kinds = [parse_incoming_key(o.key) for o in ordered]
        if LANES > 1 and sum(1 for p in kinds if p is not None and p.kind == "submissions") > 1:
            try:
                other = db.sibling(conn)
            except Exception as exc:  # e.g. the server's connection limit: the sweep loads one file at a time
                log.warning("Ingest %s loads one file at a time: a second connection could not be opened (%s)",
                            inst.id, exc)
                other = None
            if other is not None:
                self.conns.append(other)
                self.own.append(other)

    def __enter__(self) -> _Lanes:
        from concurrent.futures import ThreadPoolExecutor

        if len(self.conns) > 1:
            self.pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gradeflow-ingest-lane{n}")
                          for n in range(len(self.conns))]
        return self

    def __exit__(self, *exc) -> None:
        for _turn, future in self.running:
            _wait_quietly(future)
        for pool in self.pools:
            pool.shutdown()
        for conn in self.own:
            conn.close()

    def wait_staged(self, ahead: _Ahead) -> None:
        """Until the file started last is staged (or its turn ended), unless the file after it is read ahead already:
        a file is taken from the worker only once it is certain whether the worker reads it."""
        if self.last is not None:
            turn, future = self.last
            while not turn.settled.wait(0.02) and not future.done() and not ahead.reading(turn.obj.key):
                pass

    def run(self, turn: _Turn, job) -> None:
        """Start `turn` on a free lane once it may run beside the files still loading (waiting for them if not)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        while True:
            self._reap()
            if not self.running or (len(self.running) < len(self.conns)
                                    and all(other.settled.is_set() and _beside(turn, other)
                                            for other, _ in self.running)):
                break
            # a lane ends its file, or the file loading is staged (then it is known whether this one may start)
            wait([future for _, future in self.running], timeout=0.02, return_when=FIRST_COMPLETED)
        turn.beside = [future for _, future in self.running]
        busy = {lane for lane, _ in enumerate(self.conns) if any(f.lane == lane for _, f in self.running)}
        lane = min(set(range(len(self.conns))) - busy)
        if self.running:
            log.info("[%d] %s loads beside %s (lane %d): no submission in common", turn.number, turn.obj.key,
                     ", ".join(other.obj.key for other, _ in self.running), lane + 1)
        if len(self.conns) == 1:  # one lane: the sweep's own thread loads the file, as a sweep always did
            from concurrent.futures import Future

            future = Future()
            try:
                future.set_result(job(self.conns[lane]))
            except BaseException as exc:  # raised by join or the next run, as from a lane's thread
                future.set_exception(exc)
        else:
            future = self.pools[lane].submit(job, self.conns[lane])
        future.lane = lane
        self.running.append((turn, future))
        self.last = (turn, future)

    def join(self) -> None:
        """Until every lane is idle; a lane's error (its connection lost) is raised here."""
        from concurrent.futures import wait

        wait([future for _, future in self.running])
        self._reap()

    def _reap(self) -> None:
        done = [(turn, future) for turn, future in self.running if future.done()]
        self.running = [(turn, future) for turn, future in self.running if not future.done()]
        for _turn, future in done:
            if future.exception() is not None:
                self.join()
                raise future.exception()


def _beside(turn: _Turn, other: _Turn) -> bool:
    """Whether `turn` may load while `other` is loading: two submissions files, this one read ahead, the other
    staged, different bytes, no submission in common (their hashes: a shared hash only makes them wait)."""
    import numpy as np

    checked = turn.read_ahead
    if not (turn.loads_submissions and other.loads_submissions) or checked is None \
            or (checked.keys is None and not checked.settled) or other.submissions is None or other.sha is None \
            or checked.sha == other.sha:
        return False
    if checked.settled:  # not checked: an earlier drop settles it (read in its turn, after `other`, if not)
        return True
    return not np.intersect1d(checked.keys.submission_hashes(), other.submissions, assume_unique=True).size


def _outside_day_window(inst: Institution, day, name: str, good) -> tuple[Any, list[Reject]]:
    """Split a chunk's good rows (columns.GOOD_SCHEMA) into those submitted within `inst.day_window_days` of
    the file's day folder (dates in the institution's zone) and a named reject for each of the others: a
    file under the wrong day would otherwise load into a day that no night grades."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not good.num_rows:
        return good, []
    local = pc.local_timestamp(good.column("submitted_at").cast(pa.timestamp("us", tz=inst.timezone)))
    dates = local.cast(pa.date32())
    window = timedelta(days=inst.day_window_days)
    inside = pc.and_(pc.greater_equal(dates, pa.scalar(day - window, pa.date32())),
                     pc.less_equal(dates, pa.scalar(day + window, pa.date32())))
    if pc.all(inside).as_py():
        return good, []
    far = good.filter(pc.invert(inside))
    rejects = [Reject(name, row["row_number"], "submitted_at", shown(row["submitted_at"].isoformat()),
                      f"submitted on {local_day} ({inst.timezone}), more than {inst.day_window_days} day(s) from "
                      f"the file's day folder {day}: the file is probably under the wrong day (answers are graded "
                      f"with their folder's day); drop it under incoming/{inst.s3_prefix}/{local_day}/ or widen "
                      "day_window_days")
               for row, local_day in zip(far.select(["row_number", "submitted_at"]).to_pylist(),
                                         dates.filter(pc.invert(inside)).to_pylist(), strict=True)]
    return good.filter(inside), rejects


def _analyse(conn: psycopg.Connection, table: str, rows: int, force: bool = False) -> None:
    """ANALYZE a table after a big load (or always, for the stage: inside the file's transaction)."""
    if force or rows >= ANALYSE_AFTER_ROWS:
        db.execute(conn, f"ingest/analyse_{table}")


STAGE_PIECE_BYTES = 1024 * 1024  # answers hashed, written as CSV and sent to COPY at a time: never a chunk's copy
_STAGE_COPY = ("COPY stage_answers (row_number, submission_id, student_id, exam_id, question_id, answer_text,"
               " answer_sha256) FROM STDIN (FORMAT csv)")


def _check_and_stage(conn: psycopg.Connection, file: IncomingFile, known: dict[str, set[str]],
                     rejected_exams: dict[str, str]) -> tuple[int, int, list[Reject], _FileKeys]:
    """_check_rows for a file not read ahead (the sweep's first submissions file): its good rows go into the
    staging table through one COPY whose text a sender thread passes to the database (_HandedStageWriter) while
    this thread checks the next chunk, so the database's COPY work and the check overlap. A file that turns out
    unreadable still ends its COPY cleanly (the transaction goes on to record the rejection; the stage is dropped
    at commit, as before)."""
    rejected = None
    with conn.cursor() as cur, cur.copy(_STAGE_COPY, writer=_HandedStageWriter(cur)) as copy:
        def stage(good) -> int:
            for piece in _stage_text(good):
                copy.write(piece)
            return good.num_rows

        try:
            return _check_rows(file, known, rejected_exams, stage)
        except FileRejected as exc:
            rejected = exc
    raise rejected


class _HandedStageWriter(LibpqWriter):
    """psycopg's COPY writer with the sending done by a thread, one piece at a time: `write` hands a piece over once
    the sender has sent the one before, so the writing thread prepares the next piece (checks the next chunk) while
    the database takes this one, and memory holds one piece more than a plain COPY. (psycopg's own
    QueuedLibpqWriter queues up to 1024 buffers of 128 KiB: a file's text could pile up in memory when the database
    is slower than the check.) An error of the sender is raised in the writing thread."""

    def __init__(self, cursor) -> None:
        import queue

        super().__init__(cursor)
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _send(self) -> None:
        while (data := self.queue.get()) is not None:
            try:
                if self.error is None:  # after an error, only take what is handed over: the writer never blocks
                    super().write(data)
            except BaseException as exc:
                self.error = exc
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def write(self, data) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._send, name="gradeflow-ingest-copy", daemon=True)
            self.thread.start()
        self.queue.join()  # the piece before is sent (or failed)
        if self.error is not None:
            raise self.error
        self.queue.put(data)

    def finish(self, exc: BaseException | None = None) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        if self.error is not None and exc is None:
            raise self.error
        super().finish(exc)


_FIRSTS_COPY = ("COPY stage_firsts (row_number, submission_id, student_id, exam_id, submitted_at)"
                " FROM STDIN (FORMAT csv)")


def _copy_stage(conn: psycopg.Connection, text, statement: str = _STAGE_COPY) -> None:
    """COPY the stage's text written ahead (a file of _stage_text's pieces) into the staging table, 1 MiB at a
    time (or such text into another temporary table)."""
    text.seek(0)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for block in iter(lambda: text.read(STAGE_PIECE_BYTES), b""):
            copy.write(block)


def _stage_text(good) -> Iterator[memoryview]:
    """The COPY text (CSV written by Arrow) of a chunk of validated rows with their answer hash, a piece of about
    STAGE_PIECE_BYTES of answers at a time, so the hashes and the CSV text never add a copy of the chunk. Not their
    submitted_at: a submission's is its first row's, which the chunk's first rows carry (_FileKeys, stage_firsts)."""
    for start, length in _row_pieces(good.column("answer"), STAGE_PIECE_BYTES):
        part = good.slice(start, length)
        yield _copy_text(part.select(["row_number", "submission_id", "student_id", "exam_id", "question_id", "answer"])
                         .append_column("answer_sha256", answer_hashes(part.column("answer"))))


def _row_pieces(answers, piece_bytes: int) -> list[tuple[int, int]]:
    """(start, length) of consecutive row ranges whose answers hold about `piece_bytes` bytes each (a range ends
    at the row that reaches it; one row at least)."""
    import numpy as np
    import pyarrow.compute as pc

    ends = np.cumsum(pc.fill_null(pc.binary_length(answers), 0).to_numpy(), dtype=np.int64)
    pieces, start = [], 0
    while start < len(ends):
        reached = (ends[start - 1] if start else 0) + piece_bytes
        stop = max(start + 1, min(len(ends), int(np.searchsorted(ends, reached, side="left")) + 1))
        pieces.append((start, stop - start))
        start = stop
    return pieces


def answer_hashes(answers):
    """contract.answer_sha256 of each answer of an Arrow column, computed once per distinct answer of each piece
    of about STAGE_PIECE_BYTES (only a piece's distinct answers are held as Python text at a time)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for start, length in _row_pieces(answers, STAGE_PIECE_BYTES):
        part = answers.slice(start, length)
        encoded = pc.dictionary_encode(part.combine_chunks() if isinstance(part, pa.ChunkedArray) else part)
        hashes = pa.array([answer_sha256(a) for a in encoded.dictionary.to_pylist()], pa.string())
        out.append(pc.take(hashes, encoded.indices))
    return pa.chunked_array(out, pa.string())
