"""Proof that every connection was given back: no warning when the garbage is collected."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterable

__all__ = ["assert_no_leak_warnings"]


def assert_no_leak_warnings(caught: Iterable[warnings.WarningMessage] = ()) -> None:
    """Collect garbage and fail on any warning it raises, or in ``caught`` (what the test
    recorded itself). SQLAlchemy's pool finalizer warns "The garbage collector is trying to
    clean up non-checked-in connection" when a connection was never given back."""
    with warnings.catch_warnings(record=True) as more:
        warnings.simplefilter("always")
        gc.collect()
        gc.collect()
    messages = [str(w.message) for w in [*caught, *more]]
    assert not [m for m in messages if "non-checked-in" in m], messages
    assert messages == []
