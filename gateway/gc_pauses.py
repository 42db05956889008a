"""Keep Python's cyclic garbage collector from pausing the gateway for ~100 ms at a time.

A serving process holds millions of long-lived objects (torch, TensorFlow, the loaded models).
Every full (generation 2) collection walks all of them: measured here, ~100 ms with every
request stalled, about once a second under load (p99 latency 100 ms against a 3 ms p50).
Objects that exist once models are loaded live as long as the process, so they are moved out
of the collector's sight (``gc.freeze``); request-time garbage is still collected as before.
When a model is unloaded its objects can be garbage, so they are given back to the collector
for one full collection, then everything still alive is frozen again.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Freeze every object alive now: later full collections skip them."""
    gc.freeze()


def reclaim() -> None:
    """Collect what unloading made garbage (one full pass over everything), then settle."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
