"""devstack.demo.freeze_after_full_collections: what survives a full collection is left out of the next ones (the demo
and the sign-off e2e child call it; docs/performance.md "The e2e modules")."""

from __future__ import annotations

import gc

import pytest

from devstack import demo


@pytest.fixture
def restored_gc():
    """The worker's own collector as it was: the callback removed, and the heap frozen again if it was
    (tests/conftest.py freezes what collection leaves). Automatic collections are off meanwhile (another thread of
    the worker could start one between two checks)."""
    before, enabled, was_frozen = list(gc.callbacks), gc.isenabled(), gc.get_freeze_count() > 0
    gc.disable()
    gc.unfreeze()
    yield
    gc.callbacks[:] = before
    gc.unfreeze()
    if was_frozen:
        gc.collect()
        gc.freeze()
    if enabled:
        gc.enable()


def test_survivors_of_a_full_collection_are_frozen_and_garbage_is_still_collected(restored_gc):
    demo.freeze_after_full_collections()
    demo.freeze_after_full_collections()  # twice: one callback, not two
    assert sum(1 for c in gc.callbacks if c is demo._freeze_survivors) == 1

    class Node:
        pass

    kept, garbage = Node(), Node()
    kept.me = kept
    garbage.me = garbage  # a cycle nobody refers to: only the collector frees it
    del garbage
    assert gc.get_freeze_count() == 0
    assert gc.collect() >= 1  # a full collection: the garbage cycle is freed, then the survivors are frozen
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert not any(o is kept for o in gc.get_objects())  # frozen: out of every generation the collector walks
    gc.collect(0)
    assert gc.get_freeze_count() <= frozen  # a young collection freezes nothing (a frozen object may be freed)
