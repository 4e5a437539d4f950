"""Dynamic batching: inputs of concurrent requests share forward passes, batched by tokens.

As text-embeddings-inference's ``core/src/queue.rs``: each (model, task) has a queue of prepared inputs; one
worker takes the oldest inputs while the padded batch (inputs x longest input) stays within
``max_batch_tokens`` and ``max_batch_size``, after waiting at most ``max_wait_ms`` from the oldest input's
arrival for others to join. Each input carries its own future, so every request gets exactly its own results
whatever batch they ran in. The forward passes of all queues run one at a time on a single inference thread:
two thread pools at once on a small CPU slow each other down far more than they gain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from electra.errors import ElectraError
from electra.pipelines import Item, Pipeline
from electra.serve.limits import ApiError, Limits, invalid, overloaded, unavailable
from electra.serve.metrics import Metrics

log = logging.getLogger("electra.serve")


@dataclass
class _Entry:
    item: Item
    future: asyncio.Future
    arrived: float


class Batcher:
    """The queue and worker of one (model, task)."""

    def __init__(self, model: str, pipeline: Pipeline, executor: Executor, limits: Limits, metrics: Metrics):
        self.model, self.pipeline, self.executor = model, pipeline, executor
        self.limits, self.metrics = limits, metrics
        self.queue: deque[_Entry] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work(), name=f"batcher-{self.model}")

    async def stop(self) -> None:
        """Stop taking inputs; the worker finishes what is queued, then ends."""
        self.closed = True
        self.wakeup.set()
        if self.task is not None:
            await self.task

    async def submit(self, items: list[Item]) -> list[Any]:
        """Queue ``items`` and wait for their results (in order)."""
        if self.closed:
            raise unavailable()
        if len(self.queue) + len(items) > self.limits.max_queue:
            raise overloaded(len(self.queue), len(items), self.limits.max_queue)
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        entries = [_Entry(it, loop.create_future(), now) for it in items]
        self.queue.extend(entries)
        self.metrics.queued.labels(self.model, self.pipeline.task).set(len(self.queue))
        self.wakeup.set()
        results = await asyncio.gather(*(e.future for e in entries), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    def _take(self) -> list[_Entry]:
        """The oldest entries whose padded batch fits the limits (always at least one)."""
        batch: list[_Entry] = []
        longest = 0
        while self.queue and len(batch) < self.limits.max_batch_size:
            entry = self.queue[0]
            width = max(longest, entry.item.tokens)
            if batch and width * (len(batch) + 1) > self.limits.max_batch_tokens:
                break
            batch.append(self.queue.popleft())
            longest = width
        return batch

    def _full(self) -> bool:
        longest = max((e.item.tokens for e in self.queue), default=0)
        return (len(self.queue) >= self.limits.max_batch_size
                or longest * len(self.queue) >= self.limits.max_batch_tokens)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                if self.closed:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            deadline = self.queue[0].arrived + self.limits.max_wait_ms / 1000
            while not self._full() and not self.closed and (left := deadline - time.perf_counter()) > 0:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = [e for e in self._take() if not e.future.done()]  # a cancelled request needs no work
            self.metrics.queued.labels(self.model, self.pipeline.task).set(len(self.queue))
            if not batch:
                continue
            await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Entry]) -> None:
        task = self.pipeline.task
        self.metrics.batch_size.labels(self.model, task).observe(len(batch))
        self.metrics.batch_tokens.labels(self.model, task).observe(len(batch) * max(e.item.tokens for e in batch))
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.pipeline.run, [e.item for e in batch])
        except ElectraError as e:
            error: ApiError = invalid(str(e))
        except Exception:  # the server must keep serving: answer 500, log the traceback here only
            log.exception("inference failed (%s, %s, %d inputs)", self.model, task, len(batch))
            error = ApiError(500, "backend", "inference failed; the server log has the details")
        else:
            self.metrics.inference.labels(self.model, task).observe(time.perf_counter() - start)
            for e, r in zip(batch, results):
                if not e.future.done():
                    e.future.set_result(r)
            return
        for e in batch:
            if not e.future.done():
                e.future.set_exception(error)
