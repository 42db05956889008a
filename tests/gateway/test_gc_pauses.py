"""Long-lived objects are frozen out of full collections; unloading gives them back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway import gc_pauses


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # do not leave the rest of the test session frozen


def test_settled_objects_are_skipped_until_reclaimed() -> None:
    node = _Node()
    ref = weakref.ref(node)
    gc_pauses.settle()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert ref() is not None  # frozen: a full collection no longer walks it
    gc_pauses.reclaim()  # what an unload does
    assert ref() is None
    assert gc.get_freeze_count() > 0  # and the survivors are frozen again
