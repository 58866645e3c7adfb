import threading

import pytest

from mimicbrush_cli.data.workers import read_ahead


def test_read_ahead_gives_results_and_errors_in_order_while_reading_the_next_item():
    next_item_started = threading.Event()

    def read(item):
        if item == 1:
            next_item_started.set()
        if item == 2:
            raise ValueError("unreadable")
        return item * 10

    futures = read_ahead(read, range(4))
    first = next(futures)
    assert next_item_started.wait(timeout=60)  # item 1 is read while item 0 is still the caller's
    assert first.result() == 0
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except ValueError as error:
            results.append(str(error))
    assert results == [10, "unreadable", 30]


def test_closing_read_ahead_early_cancels_the_items_not_started():
    started = []
    running, release = threading.Event(), threading.Event()

    def read(item):
        started.append(item)
        running.set()
        release.wait(timeout=60)
        return item

    futures = read_ahead(read, range(10), ahead=2)
    first = next(futures)
    assert running.wait(timeout=60)
    futures.close()
    release.set()
    assert first.result() == 0
    assert started == [0]  # items 1 and 2 were queued behind item 0 and never ran
    with pytest.raises(StopIteration):
        next(futures)
