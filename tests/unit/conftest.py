"""The unit tier runs without services: no embedded stack, and no network sockets (pytest-socket).

Every test under tests/unit gets pytest-socket's `disable_socket` mark (Unix sockets stay allowed, for
asyncio's self-pipe and the like; subprocesses are not affected). A test that needs PostgreSQL, S3 or the
emulator belongs in tests/integration, where each xdist worker has its own embedded stack.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if UNIT_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.disable_socket)


@pytest.fixture(scope="session")
def embedded_stack():
    pytest.fail("a unit test asked for the embedded stack: tests that need PostgreSQL, S3 or the emulator "
                "belong in tests/integration")
