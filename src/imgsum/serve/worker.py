"""One inference thread for the whole server: requests queue up, and those waiting together run as one batch.

The event loop never runs a model; it awaits a future. Only one batch is in the model at a time, and at most
``max_pending`` requests wait (more are refused with 503), so memory stays bounded however many clients call.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from PIL import Image

from ..decoding import Caption, DecodingOptions
from .uploads import ApiError

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one request gets back: a caption per image (with its concepts) and how the time went."""

    captions: list[Caption]
    queue_s: float  # waiting for the worker
    inference_s: float  # the batch that carried this request, through the model
    batch_images: int  # images in that batch, from all the requests it carried


@dataclass
class _Job:
    model: str
    options: DecodingOptions
    images: list[Image.Image]
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[str, DecodingOptions]:
        return self.model, self.options


class InferenceWorker:
    """Runs ``Captioner.caption_batch`` on one thread, batching the requests that wait for the same model and
    decoding options."""

    def __init__(self, captioners: dict, max_batch: int = 16, max_pending: int = 64) -> None:
        self.captioners = captioners
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        self._backlog: deque[_Job] = deque()  # taken from the queue, waiting for a batch of their own key
        self._thread = threading.Thread(target=self._loop, name="imgsum-inference", daemon=True)
        self.batches = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._backlog)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes the jobs already queued, then ends the thread."""
        self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    async def caption(self, model: str, options: DecodingOptions | None, images: list[Image.Image]) -> Outcome:
        """Queues the images and waits, without blocking the event loop, for their captions (``options``: the
        model's own if None)."""
        job = _Job(model, options or self.captioners[model].info.decoding, images)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ApiError(503, "the server is busy: too many requests are waiting; try again shortly",
                           {"Retry-After": "1"}) from None
        return await asyncio.wrap_future(job.future)

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Job] | None:
        """The oldest job and every waiting job with the same model and options, up to ``max_batch`` images."""
        first = self._backlog.popleft() if self._backlog else self._queue.get()
        if first is None:
            return None
        batch, count = [first], len(first.images)
        for job in list(self._backlog):
            if count >= self.max_batch:
                break
            if job.key == first.key:
                self._backlog.remove(job)
                batch.append(job)
                count += len(job.images)
        while count < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch and the backlog
                break
            if job.key == first.key:
                batch.append(job)
                count += len(job.images)
            else:
                self._backlog.append(job)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]  # drop abandoned requests
        if not batch:
            return
        start = time.perf_counter()
        model, options = batch[0].key
        images = [im for job in batch for im in job.images]
        try:
            results = self.captioners[model].caption_batch(images, batch_size=self.max_batch, workers=1,
                                                           **options.to_dict())
        except Exception as err:  # a failure of the model must reach every waiting request, not kill the thread
            logger.exception("inference failed for a batch of %d images", len(images))
            for job in batch:
                job.future.set_exception(err)
            return
        elapsed = time.perf_counter() - start
        self.batches += 1
        logger.debug("batch %d: %d requests, %d images, %s %s, %.3f s", self.batches, len(batch), len(images),
                     model, options, elapsed)
        at = 0
        for job in batch:
            rows = results[at : at + len(job.images)]
            at += len(job.images)
            failed = [r.error for r in rows if not r.ok]
            if failed:
                job.future.set_exception(ApiError(422, f"cannot caption the image: {failed[0]}"))
            else:
                captions = [Caption(r.caption or "", r.concepts) for r in rows]
                job.future.set_result(Outcome(captions, start - job.queued_at, elapsed, len(images)))
