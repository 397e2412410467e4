"""Batch captioning on Ray Data: many photos, a pool of actors that each load the model once, part files out.

    caption_on_ray(["photos/"], "captions/")                          # a local Ray instance, 2 actors
    caption_on_ray(paths, "captions/", address="ray://head:10001", workers=32, fmt="parquet")
    caption_on_ray(ray.data.read_binary_files("s3://bucket/photos", include_paths=True), "captions/")

The source is a list of image paths (files the actors can read), or a Ray dataset with an ``image`` column of
paths or with ``bytes`` and ``path`` columns (as ``read_binary_files(..., include_paths=True)`` gives: the way
to read a bucket). Each actor (:class:`CaptionActor`) loads the model once and captions batches with
:meth:`Captioner.caption_batch`, so an unreadable file is an error row, never a failed job. Ray Data restarts
an actor that dies and retries its tasks (its defaults for actor pools: ``max_restarts=-1``,
``max_task_retries=-1``).

The driver writes the rows into ``out`` as part files, each written whole or not at all, as the results
arrive: ``part-RUN-NNNNN.jsonl`` (each line as ``imgsum caption --format jsonl`` prints it:
:meth:`CaptionResult.to_row`) or ``.parquet`` (the same fields; ``concepts`` a list of structs). On start it
reads the ``image`` column of the parts already there and skips those images (error rows count as done), so
a stopped job resumes where it stopped, and a run over a finished output does no work. Rows are committed
once: an image already written is never written again, whatever Ray retried.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
from tqdm import tqdm

from ..api import Captioner
from ..decoding import DecodingOptions
from ..files import remove_leftovers, write_atomic, write_text_atomic
from ..pretrained import resolve_model

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet")
#: Batches per block of a list of paths, at most: small blocks spread the work over the actors and stream rows back
#: steadily (Ray Data would otherwise make at most 200 blocks, 5,000 paths each for a million photos).
BATCHES_PER_BLOCK = 4
#: A Parquet part's columns: the fields of :meth:`CaptionResult.to_row`, null where a row lacks one.
ROW_SCHEMA = pa.schema([("image", pa.string()), ("caption", pa.string()),
                        ("concepts", pa.list_(pa.struct([("word", pa.string()), ("p", pa.float64())]))),
                        ("error", pa.string())])


@dataclass
class RaySummary:
    """What one run did. ``skipped``: images of the source already in the output, not captioned again;
    ``duplicates``: an image given twice in the source, or whose row came back twice, written once."""

    captioned: int = 0
    errors: int = 0
    skipped: int = 0
    duplicates: int = 0
    parts: int = 0
    seconds: float = 0.0
    first_rows_seconds: float | None = None  # from the start to the first rows back: Ray, actors, model loading
    first_rows: int = 0  # how many came back then

    @property
    def written(self) -> int:
        return self.captioned + self.errors

    def to_dict(self) -> dict:
        return asdict(self)


class CaptionActor:
    """One actor of the pool: loads the model once, then turns batches of images into rows.

    A batch has an ``image`` column of paths, or ``bytes`` and ``path`` columns; it comes back as ``image``
    (the label of each row: the path), ``row`` (the row as JSON; empty for an image in ``done``, which is not
    captioned) and ``failed`` (whether the row is an error row).
    """

    def __init__(self, model: str, backend: str | None, threads: int, batch_size: int, overrides: dict,
                 done: frozenset[str] = frozenset(), readers: int = 2) -> None:
        self.captioner = Captioner.load(model, backend=backend, threads=threads)
        self.batch_size = batch_size
        self.readers = readers  # threads that read and preprocess the next images beside the model
        self.overrides = overrides
        self.done = done

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "bytes" in batch:
            labels, sources = [str(p) for p in batch["path"]], [bytes(b) for b in batch["bytes"]]
        else:
            labels = sources = [str(p) for p in batch["image"]]
        todo = [i for i, label in enumerate(labels) if label not in self.done]
        results = self.captioner.caption_batch([sources[i] for i in todo], batch_size=self.batch_size,
                                               workers=self.readers, **self.overrides)
        rows, failed = [""] * len(labels), [False] * len(labels)
        for i, r in zip(todo, results):
            rows[i], failed[i] = json.dumps(replace(r, image=labels[i]).to_row()), not r.ok
        return {"image": np.array(labels, dtype=object), "row": np.array(rows, dtype=object),
                "failed": np.array(failed, dtype=bool)}


def caption_on_ray(source: Sequence[str | Path] | ray.data.Dataset, out: str | Path, model: str = "default",
                   address: str | None = None, workers: int = 2, batch_size: int = 16, fmt: str = "jsonl",
                   threads: int = 1, backend: str | None = None, rows_per_part: int = 1000, readers: int = 2,
                   progress: bool = True, quiet: bool = True, **overrides) -> RaySummary:
    """Captions ``source`` on Ray into the part files of the folder ``out``; see the module's description.

    ``address``: a Ray cluster (``ray://HOST:10001``, ``auto``); None starts a local Ray instance, unless this
    process is already connected to one, which is then used (and left running). ``workers`` actors of
    ``threads`` CPUs each (the model's threads), each reading its next images on ``readers`` more threads
    (``imgsum caption --workers``); ``batch_size`` images per batch; a part file every ``rows_per_part`` rows (and at
    the end, and when stopped). ``quiet`` keeps Ray's own log lines off the terminal (they stay in its session
    logs). ``overrides``: decoding options, as for :meth:`Captioner.caption` (``beam=5``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    DecodingOptions().with_overrides(**overrides)  # an unknown option fails here, before any work
    resolve_model(model)  # a missing model too
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)  # half-written parts of a driver that was killed
    done = done_images(out)
    if done:
        logger.info("%s already holds %d images; they are not captioned again", out, len(done))
    summary = RaySummary()
    todo = None if isinstance(source, ray.data.Dataset) else _not_done([str(p) for p in source], done, summary)
    if todo is not None and not todo:
        logger.info("nothing to caption: all %d images are in %s", summary.skipped, out)
        summary.seconds = time.perf_counter() - start
        return summary
    writer = PartWriter(out, fmt, rows_per_part)
    with _ray(address, workers * threads, quiet):
        dataset = source if todo is None else ray.data.from_items(
            [{"image": p} for p in todo], override_num_blocks=_blocks(len(todo), batch_size, workers))
        actor_args = {"model": model, "backend": backend, "threads": threads, "batch_size": batch_size,
                      "overrides": overrides, "readers": readers, "done": frozenset(done) if todo is None else frozenset()}
        rows = dataset.map_batches(CaptionActor, batch_size=batch_size, batch_format="numpy", num_cpus=threads,
                                   compute=ray.data.ActorPoolStrategy(size=workers), fn_constructor_kwargs=actor_args)
        bar = tqdm(total=None if todo is None else len(todo), unit="img", desc="captioning on ray", file=sys.stderr,
                   disable=not progress)
        try:
            _commit(rows, writer, set(done), summary, bar, start)
        finally:
            bar.close()
            writer.flush()  # what came back before a failure or Ctrl-C is kept
            summary.parts, summary.seconds = writer.parts, time.perf_counter() - start
    logger.info("%d captioned, %d errors, %d skipped as done, in %.1f s; %d part files in %s", summary.captioned,
                summary.errors, summary.skipped, summary.seconds, summary.parts, out)
    return summary


def _blocks(images: int, batch_size: int, workers: int) -> int:
    """Blocks for a list of ``images`` paths: at most :data:`BATCHES_PER_BLOCK` batches each, and at least one per
    worker while there are images for it."""
    return min(images, max(workers, -(-images // (batch_size * BATCHES_PER_BLOCK))))


def _not_done(paths: list[str], done: set[str], summary: RaySummary) -> list[str]:
    """The paths not in ``done``, each once, in order; the others are counted as skipped."""
    unique = list(dict.fromkeys(paths))
    todo = [p for p in unique if p not in done]
    summary.skipped += len(unique) - len(todo)
    summary.duplicates += len(paths) - len(unique)
    return todo


def _commit(rows: ray.data.Dataset, writer: "PartWriter", seen: set[str], summary: RaySummary, bar: tqdm,
            start: float) -> None:
    """Streams the rows back from the actors into ``writer``, each image once."""
    # Each block as it comes (no prefetching, which holds a finished block back until the next one is ready).
    for batch in rows.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        if summary.first_rows_seconds is None:
            summary.first_rows_seconds, summary.first_rows = time.perf_counter() - start, len(batch["image"])
        for image, row, failed in zip(batch["image"], batch["row"], batch["failed"]):
            image = str(image)
            if not row:
                summary.skipped += 1
            elif image in seen:
                summary.duplicates += 1
                logger.debug("%s came back twice; written once", image)
            else:
                seen.add(image)
                writer.add(str(row))
                summary.errors += bool(failed)
                summary.captioned += not failed
                bar.update()


class PartWriter:
    """Collects rows (JSON text) and writes them as numbered part files, each whole or not at all."""

    def __init__(self, folder: Path, fmt: str, rows_per_part: int) -> None:
        self.folder, self.fmt, self.rows_per_part = folder, fmt, max(1, rows_per_part)
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"  # a resumed job never overwrites
        self.rows: list[str] = []
        self.parts = 0

    def add(self, row: str) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        path = self.folder / f"part-{self.run}-{self.parts:05d}.{self.fmt}"
        if self.fmt == "jsonl":
            write_text_atomic(path, "".join(row + "\n" for row in self.rows))
        else:
            table = pa.Table.from_pylist([json.loads(row) for row in self.rows], schema=ROW_SCHEMA)
            write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        logger.debug("wrote %s (%d rows)", path, len(self.rows))
        self.rows = []
        self.parts += 1


def part_files(folder: str | Path) -> list[Path]:
    """The part files of an output folder, both formats, in name order."""
    return sorted(p for fmt in FORMATS for p in Path(folder).glob(f"part-*.{fmt}"))


def done_images(folder: str | Path) -> set[str]:
    """The images an output folder already holds a row for (captioned or not)."""
    done: set[str] = set()
    for part in part_files(folder):
        if part.suffix == ".parquet":
            done.update(pq.read_table(part, columns=["image"]).column("image").to_pylist())
        else:
            with part.open(encoding="utf-8") as f:
                done.update(json.loads(line)["image"] for line in f if line.strip())
    return done


def read_rows(folder: str | Path) -> list[dict]:
    """Every row of an output folder, as ``imgsum caption --format jsonl`` prints them (a Parquet row's null
    fields left out), part by part."""
    rows: list[dict] = []
    for part in part_files(folder):
        if part.suffix == ".parquet":
            rows += [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(part).to_pylist()]
        else:
            with part.open(encoding="utf-8") as f:
                rows += [json.loads(line) for line in f if line.strip()]
    return rows


@contextlib.contextmanager
def _ray(address: str | None, cpus: int, quiet: bool) -> Iterator[None]:
    """Connected to Ray for the block: the instance this process already has, or ``address``, or a new local
    instance (``address="local"``: never one that happens to be running, with at least ``cpus`` CPUs); shut
    down afterwards if started here."""
    with _quiet_ray_data(quiet):
        if ray.is_initialized():
            yield
            return
        level = logging.ERROR if quiet else logging.WARNING
        started = time.perf_counter()
        if address:
            ray.init(address=address, log_to_driver=not quiet, logging_level=level)
        else:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cpus), include_dashboard=False,
                     log_to_driver=not quiet, logging_level=level)
        logger.info("connected to Ray (%s) in %.1f s", address or "a local instance", time.perf_counter() - started)
        try:
            yield
        finally:
            ray.shutdown()


@contextlib.contextmanager
def _quiet_ray_data(quiet: bool) -> Iterator[None]:
    """Ray Data's progress bars and console log lines off for the block, when ``quiet`` (its log file keeps
    them); restored afterwards."""
    if not quiet:
        yield
        return
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.print_on_execution_start
    console = [h for h in logging.getLogger("ray.data").handlers
               if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in console]
    context.enable_progress_bars, context.print_on_execution_start = False, False
    for h in console:
        h.setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.enable_progress_bars, context.print_on_execution_start = saved
        for h, level in zip(console, levels):
            h.setLevel(level)
