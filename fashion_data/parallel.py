"""An order-preserving parallel map with a bounded number of results in flight.

Pool.imap would read ahead without limit when the consumer is slow; here at
most ``window`` results exist at a time, so 100k photos never sit in RAM, and
the output order is the input order whatever the number of workers.
"""
from __future__ import annotations

import multiprocessing
from collections import deque
from itertools import islice
from typing import Callable, Iterable, Iterator

RESULTS_PER_WORKER = 8


def ordered_map(func: Callable, items: Iterable, workers: int = 1,
                initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """Yield func(item) for each item, in order; workers <= 1 runs in this process."""
    if workers <= 1:
        if initializer:
            initializer(*initargs)
        yield from map(func, items)
        return
    items = iter(items)
    with multiprocessing.get_context().Pool(workers, initializer, initargs) as pool:
        pending = deque(pool.apply_async(func, (item,)) for item in islice(items, workers * RESULTS_PER_WORKER))
        while pending:
            result = pending.popleft().get()
            for item in islice(items, 1):
                pending.append(pool.apply_async(func, (item,)))
            yield result
