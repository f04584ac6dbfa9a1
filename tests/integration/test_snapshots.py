"""tests/conftest.py's snapshots: a module builds an expensive state once (SNAPSHOTS, `databases`), and every test
that asks for it starts on its own copy, so no test sees what another changed (tests run in file order)."""

from __future__ import annotations

import pytest

from devstack import stack

SNAPSHOTS = {"marked": "marked_database"}
ROWS = "SELECT action FROM audit_log WHERE actor = 'snapshot-test' ORDER BY audit_id"


def _mark(connection, action: str) -> None:
    connection.execute("INSERT INTO audit_log (actor, action, institution_id) VALUES ('snapshot-test', %s,"
                       " 'northfield')", (action,))


@pytest.fixture(scope="module")
def marked_database(databases, embedded_stack):
    databases.new()
    with stack.connect_as(embedded_stack, stack.OWNER_ROLE, autocommit=True) as owner:
        _mark(owner, "built once")
    snapshot = databases.snapshot("marked")
    yield snapshot
    databases.drop(snapshot)


@pytest.fixture
def marked():
    """The test's database is its own copy of marked_database's snapshot."""


def test_a_test_starts_on_the_snapshot_and_may_change_it(marked, admin_conn):
    assert [r[0] for r in admin_conn.execute(ROWS)] == ["built once"]
    _mark(admin_conn, "changed by the first test")


def test_the_next_test_starts_on_the_snapshot_again(marked, admin_conn):
    assert [r[0] for r in admin_conn.execute(ROWS)] == ["built once"]


def test_a_test_that_does_not_ask_for_it_starts_on_the_empty_template(admin_conn):
    assert admin_conn.execute(ROWS).fetchall() == []


def test_after_it_the_next_snapshot_test_still_gets_its_copy(marked, admin_conn):
    assert [r[0] for r in admin_conn.execute(ROWS)] == ["built once"]
