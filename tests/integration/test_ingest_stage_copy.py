"""The first submissions file of a sweep (not read ahead) is staged through one COPY whose text a sender thread passes
to the database while the next chunk is checked (ingest._HandedStageWriter, one piece at a time): every piece arrives in
order, an error of the database reaches the checking thread instead of leaving it waiting, and a file staged in
many small chunks this way loads exactly as the same drop read ahead."""

from __future__ import annotations

import threading

import psycopg
import pytest

from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .test_ingest_ahead import _drop, _state

NORTH = get_institution("northfield")
LAKE = get_institution("lakeshore")


def _row(n: int, answer: str = "B") -> bytes:
    return f'"{n}","s{n}","st{n}","bio-101","q1","{answer}","{n:064x}"\n'.encode()


def test_the_queued_writer_sends_every_piece_in_order_from_its_own_thread(conn, monkeypatch):
    senders = []
    send = ingest.LibpqWriter.write

    def recording(self, data):
        senders.append(threading.current_thread().name)
        send(self, data)

    monkeypatch.setattr(ingest.LibpqWriter, "write", recording)
    with conn.transaction():
        db.execute(conn, "ingest/create_stage")
        with conn.cursor() as cur, cur.copy(ingest._STAGE_COPY, writer=ingest._HandedStageWriter(cur)) as copy:
            for n in range(1, 2001):
                copy.write(_row(n, "x" * (n % 300)))
        rows = conn.execute("SELECT row_number, length(answer_text) FROM stage_answers ORDER BY row_number").fetchall()
    assert rows == [(n, n % 300) for n in range(1, 2001)]
    assert senders and set(senders) == {"gradeflow-ingest-copy"}


def test_an_error_of_the_database_reaches_the_writing_thread(conn):
    with conn.transaction(), pytest.raises(psycopg.errors.BadCopyFileFormat):
        db.execute(conn, "ingest/create_stage")
        with conn.cursor() as cur, cur.copy(ingest._STAGE_COPY, writer=ingest._HandedStageWriter(cur)) as copy:
            copy.write(_row(1))
            copy.write(b'"2","only two columns"\n')
            for n in range(3, 20001):  # pieces after the error: the writing thread must not block on them
                copy.write(_row(n))
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the transaction was rolled back, the connection works


def test_a_drop_staged_chunk_by_chunk_through_the_sender_loads_as_read_ahead(conn, tenant_conn, admin_conn, s3,
                                                                            monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 3)  # many COPY pieces per file, the next chunk checked meanwhile
    _drop(s3, "northfield")
    _drop(s3, "lakeshore")
    monkeypatch.setattr(ingest, "READ_AHEAD", False)  # every file staged through the sender thread
    alone = ingest.ingest_institution(NORTH, conn, s3)
    monkeypatch.setattr(ingest, "READ_AHEAD", True)
    ahead = ingest.ingest_institution(LAKE, tenant_conn("lakeshore"), s3)
    assert {**alone.as_dict(), "institution": None, "rejects_reports": None} == \
           {**ahead.as_dict(), "institution": None, "rejects_reports": None}
    assert _state(admin_conn, s3, "northfield") == _state(admin_conn, s3, "lakeshore")
