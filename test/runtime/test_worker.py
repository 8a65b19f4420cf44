"""Keep-latest worker: newest item only, stale items dropped and counted, errors survived."""
from __future__ import annotations

import threading
import time

from perception_nodes.runtime.worker import KeepLatestWorker


def test_only_the_newest_pending_item_is_processed():
    done = []
    worker = KeepLatestWorker(done.append)
    for i in range(3):
        worker.submit(i)
    assert worker.run_once() and done == [2]
    assert not worker.run_once()
    c = worker.counts
    assert (c.submitted, c.processed, c.replaced, c.too_old) == (3, 1, 2, 0)


def test_items_older_than_max_age_are_dropped(clock):
    done = []
    worker = KeepLatestWorker(done.append, max_age_s=0.5, clock=clock)
    worker.submit('old')
    clock.advance(0.6)
    assert worker.run_once() and done == []
    worker.submit('fresh')
    clock.advance(0.4)
    worker.run_once()
    assert done == ['fresh'] and worker.counts.too_old == 1


def test_errors_are_counted_and_the_worker_goes_on():
    seen = []

    def process(item):
        if item == 'bad':
            raise RuntimeError('boom')
        seen.append(item)

    errors = []
    worker = KeepLatestWorker(process, on_error=lambda exc, item: errors.append((str(exc), item)))
    worker.submit('bad')
    worker.run_once()
    worker.submit('good')
    worker.run_once()
    assert seen == ['good'] and errors == [('boom', 'bad')] and worker.counts.errors == 1


def test_slow_backend_threaded_latency_stays_bounded():
    """20 items at 200 Hz into a 20 Hz consumer: most are dropped, the last one is always processed."""
    processed = []
    started = {}

    def slow(item):
        started[item] = time.monotonic()
        time.sleep(0.05)
        processed.append(item)

    submitted_at = {}
    worker = KeepLatestWorker(slow)
    worker.start()
    try:
        for i in range(20):
            submitted_at[i] = time.monotonic()
            worker.submit(i)
            time.sleep(0.005)
        assert worker.wait_idle(timeout=5.0)
    finally:
        worker.stop()
    c = worker.counts
    assert processed[-1] == 19
    assert processed == sorted(processed) and len(processed) < 10
    assert c.submitted == 20 and c.processed + c.replaced + c.too_old == 20 and c.replaced >= 10
    # no item waited for more than one processing slot (+ scheduling slack): nothing queues up
    waits = [started[i] - submitted_at[i] for i in processed]
    assert max(waits) < 0.05 + 0.1


def test_stop_wakes_a_waiting_thread():
    worker = KeepLatestWorker(lambda item: None)
    worker.start()
    t = threading.Thread(target=worker.stop)
    t.start()
    t.join(3.0)
    assert not t.is_alive()
