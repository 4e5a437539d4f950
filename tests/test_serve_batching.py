"""The batching queue in-process with a fake pipeline: batches by padded tokens, each caller gets its own results,
a full queue answers 429, a failing batch answers 500 without stopping the worker."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("prometheus_client")

from electra.pipelines import Item  # noqa: E402
from electra.serve.batching import Batcher  # noqa: E402
from electra.serve.limits import ApiError, Limits  # noqa: E402
from electra.serve.metrics import Metrics  # noqa: E402


class Echo:
    """run(items) -> each item's data doubled; records the batches it saw."""

    task = "detect"

    def __init__(self, fail_on=None):
        self.batches, self.fail_on = [], fail_on

    def run(self, items):
        self.batches.append([i.data for i in items])
        if self.fail_on in (i.data for i in items):
            raise RuntimeError("boom")
        return [2 * i.data for i in items]


def serve(pipeline, limits, requests):
    """Submit every request (a list of (data, tokens)) at once; return each request's results or error."""
    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = Batcher("m", pipeline, pool, limits, Metrics())
            b.start()
            out = await asyncio.gather(*(b.submit([Item(d, t) for d, t in r]) for r in requests),
                                       return_exceptions=True)
            await b.stop()
            return out
    return asyncio.run(main())


def test_inputs_of_concurrent_requests_share_batches_up_to_the_token_budget():
    pipe = Echo()
    out = serve(pipe, Limits(max_batch_tokens=12, max_wait_ms=50), [[(i, 4)] for i in range(7)])
    assert out == [[2 * i] for i in range(7)]  # each caller its own result, in order
    assert [len(b) for b in pipe.batches] == [3, 3, 1]  # 3 x 4 tokens fit 12; the 4th would not


def test_padding_counts_against_the_budget():
    pipe = Echo()
    serve(pipe, Limits(max_batch_tokens=12, max_wait_ms=50), [[(0, 2)], [(1, 2)], [(2, 6)], [(3, 2)]])
    assert pipe.batches == [[0, 1], [2, 3]]  # 3 inputs padded to 6 tokens would be 18 > 12


def test_a_request_bigger_than_the_queue_is_refused_with_429():
    out = serve(Echo(), Limits(max_queue=3), [[(i, 1) for i in range(4)]])
    assert isinstance(out[0], ApiError) and out[0].status == 429 and out[0].error_type == "overloaded"


def test_a_failing_batch_answers_500_and_the_worker_goes_on():
    pipe = Echo(fail_on=0)
    out = serve(pipe, Limits(max_batch_size=1, max_wait_ms=0), [[(0, 1)], [(1, 1)]])
    assert isinstance(out[0], ApiError) and out[0].status == 500 and "Traceback" not in out[0].message
    assert out[1] == [2]
