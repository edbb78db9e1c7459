"""The request-coalescing queue: concurrent requests share model calls, results go back to the right caller,
the token budget splits batches, kinds never mix, a full queue refuses, and a failing batch fails only itself;
and the Prometheus text of the metrics."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bgekit.serve.batching import Batcher, Metrics, QueueFull


def recorder(delay: float = 0.0):
    calls = []

    def run(key, items):
        calls.append((key, list(items), threading.current_thread().name))
        time.sleep(delay)
        return [(key, x, x * 10) for x in items]

    return run, calls


def test_concurrent_requests_share_one_call_and_get_their_own_results():
    run, calls = recorder()
    batcher = Batcher(run, max_wait_ms=50)

    async def main():
        return await asyncio.gather(*(batcher.submit("k", [i, i + 100], [1, 1]) for i in range(10)))

    results = asyncio.run(main())
    assert results == [[("k", i, i * 10), ("k", i + 100, (i + 100) * 10)] for i in range(10)]
    assert len(calls) == 1 and len(calls[0][1]) == 20 and calls[0][2].startswith("bgekit-model")


def test_token_budget_splits_batches_and_keys_never_mix():
    run, calls = recorder()
    batcher = Batcher(run, max_batch_tokens=10, max_wait_ms=20)

    async def main():
        jobs = [batcher.submit("a", [i], [4]) for i in range(5)] + [batcher.submit("b", [9], [1])]
        return await asyncio.gather(*jobs)

    results = asyncio.run(main())
    assert [r[0][1] for r in results] == [0, 1, 2, 3, 4, 9]
    assert all(9 not in c[1] for c in calls if c[0] == "a")  # a "b" input never rides in an "a" call
    a_batches = [c[1] for c in calls if c[0] == "a"]
    assert a_batches == [[0, 1], [2, 3], [4]]  # 4 + 4 tokens fit 10, a third does not
    assert [c[1] for c in calls if c[0] == "b"] == [[9]]


def test_requests_arriving_while_the_model_runs_form_the_next_batch():
    run, calls = recorder(delay=0.05)
    batcher = Batcher(run, max_wait_ms=0)

    async def main():
        first = asyncio.ensure_future(batcher.submit("k", [0], [1]))
        await asyncio.sleep(0.01)  # the model is busy with the first request
        rest = [batcher.submit("k", [i], [1]) for i in range(1, 8)]
        return await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert [c[1] for c in calls] == [[0], [1, 2, 3, 4, 5, 6, 7]]


def test_full_queue_refuses_and_recovers():
    run, calls = recorder(delay=0.05)
    metrics = Metrics()
    batcher = Batcher(run, max_wait_ms=0, max_queue_inputs=3, metrics=metrics)

    async def main():
        first = asyncio.ensure_future(batcher.submit("k", [0], [1]))
        await asyncio.sleep(0.01)  # taken by the model: no longer queued
        waiting = [asyncio.ensure_future(batcher.submit("k", [i], [1])) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="3 inputs are queued"):
            await batcher.submit("k", [4], [1])
        done = await asyncio.gather(first, *waiting)
        return done, await batcher.submit("k", [5], [1])

    done, later = asyncio.run(main())
    assert [d[0][1] for d in done] == [0, 1, 2, 3] and later == [("k", 5, 50)]
    assert "bgekit_queue_rejected_total 1" in metrics.render()


def test_a_failing_batch_fails_its_requests_only():
    def run(key, items):
        if key == "bad":
            raise RuntimeError("model exploded")
        return items

    batcher = Batcher(run, max_wait_ms=5)

    async def main():
        bad = batcher.submit("bad", [1], [1])
        good = batcher.submit("good", [2], [1])
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and "exploded" in str(bad) and good == [2]


def test_wrong_result_count_is_an_error():
    batcher = Batcher(lambda key, items: items[:-1], max_wait_ms=0)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 inputs"):
        asyncio.run(batcher.submit("k", [1, 2], [1, 1]))


def test_bad_settings():
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive integer"):
        Batcher(lambda k, i: i, max_batch_tokens=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batcher(lambda k, i: i, max_wait_ms=-1)


def test_metrics_render_prometheus_text():
    m = Metrics()
    m.inc("bgekit_requests_total", {"route": "/embed", "code": "200"})
    m.inc("bgekit_requests_total", {"route": "/embed", "code": "200"})
    m.set("bgekit_queue_inputs", 3)
    m.observe("bgekit_batch_inputs", 5)
    m.observe("bgekit_batch_inputs", 300)
    text = m.render()
    assert '# TYPE bgekit_requests_total counter' in text
    assert 'bgekit_requests_total{code="200",route="/embed"} 2' in text
    assert "bgekit_queue_inputs 3" in text
    assert 'bgekit_batch_inputs_bucket{le="4"} 0' in text and 'bgekit_batch_inputs_bucket{le="8"} 1' in text
    assert 'bgekit_batch_inputs_bucket{le="+Inf"} 2' in text and "bgekit_batch_inputs_sum 305" in text
    assert "bgekit_batch_inputs_count 2" in text


def test_a_large_request_is_split_into_model_calls_within_the_budget():
    run, calls = recorder()
    batcher = Batcher(run, max_batch_tokens=10, max_wait_ms=0)
    out = asyncio.run(batcher.submit("k", list(range(7)), [4] * 7))
    assert [x[1] for x in out] == list(range(7))  # results in order, across calls
    assert [c[1] for c in calls] == [[0, 1], [2, 3], [4, 5], [6]]


def test_work_of_a_cancelled_request_leaves_the_queue():
    run, calls = recorder(delay=0.1)
    metrics = Metrics()
    batcher = Batcher(run, max_wait_ms=0, metrics=metrics)

    async def main():
        first = asyncio.ensure_future(batcher.submit("k", [0], [1]))
        await asyncio.sleep(0.02)  # the model is busy with the first request
        gone = asyncio.ensure_future(batcher.submit("k", [1, 2, 3], [1, 1, 1]))
        await asyncio.sleep(0.01)
        assert batcher.queued_inputs == 3
        gone.cancel()  # what the server does when its client disconnects
        await asyncio.sleep(0.01)
        assert batcher.queued_inputs == 0
        await first
        return await batcher.submit("k", [4], [1])

    later = asyncio.run(main())
    assert later == [("k", 4, 40)]
    assert [c[1] for c in calls] == [[0], [4]]  # 1, 2, 3 never reached the model
    assert "bgekit_cancelled_inputs_total 3" in metrics.render()


def test_two_workers_run_batches_concurrently_and_share_the_waiting_inputs():
    running, peak, calls = [0], [0], []
    lock = threading.Lock()

    def run(key, items):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls.append(list(items))
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return items

    batcher = Batcher(run, max_wait_ms=5, workers=2, min_fill=4)

    async def main():
        return await asyncio.gather(*(batcher.submit("k", [i], [1]) for i in range(16)))

    assert asyncio.run(main()) == [[i] for i in range(16)]
    assert peak[0] == 2 and sorted(len(c) for c in calls) == [8, 8]  # both threads, half each
    assert sorted(x for c in calls for x in c) == list(range(16))


def test_a_large_request_is_shared_by_the_workers():
    run, calls = recorder(delay=0.05)
    batcher = Batcher(run, max_wait_ms=0, workers=2, min_fill=4)
    out = asyncio.run(batcher.submit("k", list(range(40)), [1] * 40))
    assert [x[1] for x in out] == list(range(40))
    assert sorted(len(c[1]) for c in calls) == [20, 20] and len({c[2] for c in calls}) == 2  # two threads
