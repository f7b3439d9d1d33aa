"""Python's cyclic garbage collector and the objects that live as long as the process.

A pytest-xdist worker keeps its modules and every collected item (6,776 for the full matrix) for the whole run,
the sandbox its modules and the cluster it serves; each full collection walked all of them again (94 ms per
collection in a worker of the full matrix, ``perf`` counted ~9 % of a worker's CPU in the collector).
:func:`settle` moves what exists at that moment out of the collector's sight (``gc.freeze``): it is never
garbage, so nothing is lost but walks that find nothing.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Everything alive now is long-lived: the collector stops walking it."""
    gc.freeze()
