"""Batch captioning on a local Ray instance against one process, in the same run.

    .venv/bin/python benchmarks/ray_throughput.py                 # 500 Flickr8k test images; Ray with 1 and 2 workers
    .venv/bin/python benchmarks/ray_throughput.py --images 100 --workers 1

On the first ``--images`` images of the Flickr8k test split (by name), one after the other:

- **one process**: ``Captioner.caption_batch`` as ``imgsum caption`` runs it (its default threads, batch 16), the
  model loaded and warmed up beforehand;
- **Ray, N workers**: :func:`imgsum.scale.ray_caption.caption_on_ray` on a local Ray instance, N actors of one
  CPU (one ONNX Runtime thread) each, end to end: the actors' start and model loading included, the part files
  written. Also the rate after the first rows came back (the images after those over the seconds after them): what
  a long job runs at.

Ray's own start-up is timed apart. The captions of every Ray run are compared with the single process's. The
machine's busy cores are sampled before and during each measurement (other work disturbs the figures: say so).
Writes ``results/scale/ray.json`` and ``results/scale/ray.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from data_paths import FLICKR8K_CAPTIONS
from harness import _busy_seconds, rate
from run_all import test_images

HERE = Path(__file__).resolve().parent
logger = logging.getLogger("benchmarks")
MILLION = 1_000_000


class BusyCores:
    """Cores the whole machine kept busy on average during the block (all processes: Ray's workers are not
    this process's children)."""

    def __enter__(self) -> "BusyCores":
        self.cores: float | None = None
        self._start = time.perf_counter(), _busy_seconds()
        return self

    def __exit__(self, *exc) -> None:
        wall0, busy0 = self._start
        busy1 = _busy_seconds()
        if busy0 is not None and busy1 is not None:
            self.cores = (busy1 - busy0) / (time.perf_counter() - wall0)


def background_cores(seconds: float = 5.0) -> float | None:
    """Busy cores while this benchmark does nothing: the load of other work on the machine."""
    with BusyCores() as busy:
        time.sleep(seconds)
    return busy.cores


def rows_of(results) -> list[dict]:
    return sorted((r.to_row() for r in results), key=lambda r: r["image"])


def single_process(paths: list[str], model: str, batch_size: int) -> tuple[dict, list[dict]]:
    from imgsum.api import Captioner

    captioner = Captioner.load(model)
    captioner.caption_batch(paths[:batch_size], batch_size=batch_size)  # sessions and allocations out of the way
    with BusyCores() as busy:
        start = time.perf_counter()
        results = captioner.caption_batch(paths, batch_size=batch_size)
        seconds = time.perf_counter() - start
    entry = {"system": "one process (imgsum caption)", "workers": None, "images": len(paths), "seconds": seconds,
             "images_per_second": rate(len(paths), seconds), "busy_cores": busy.cores}
    return entry, rows_of(results)


def start_ray(cpus: int) -> float:
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    return time.perf_counter() - start


def on_ray(paths: list[str], model: str, workers: int, batch_size: int, folder: Path) -> tuple[dict, list[dict]]:
    from imgsum.scale.ray_caption import caption_on_ray, read_rows

    with BusyCores() as busy:
        summary = caption_on_ray(paths, folder, model=model, workers=workers, threads=1, batch_size=batch_size,
                                 progress=False)
    steady = (summary.written - summary.first_rows) / (summary.seconds - summary.first_rows_seconds)
    entry = {"system": f"Ray, {workers} worker{'s' * (workers > 1)}", "workers": workers, "images": len(paths),
             "seconds": summary.seconds, "images_per_second": rate(summary.written, summary.seconds),
             "first_rows_seconds": summary.first_rows_seconds, "steady_images_per_second": steady,
             "busy_cores": busy.cores, "summary": summary.to_dict()}
    return entry, sorted(read_rows(folder), key=lambda r: r["image"])


def large_photo_read_ms(model: str, repeats: int = 10) -> dict:
    """Reading and preprocessing a 12-megapixel JPEG (a sample photo enlarged to 4000x3000) against a small
    Flickr8k-sized one (224x224): what full-size photos add per image."""
    from PIL import Image

    from imgsum.api import Captioner
    from imgsum.images import open_image

    preprocess = Captioner.load(model).preprocess
    sample = Path(__file__).resolve().parents[1] / "src" / "imgsum" / "assets" / "samples" / "chelsea.jpg"
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in (("small_224", (224, 224)), ("large_12mp", (4000, 3000))):
            path = Path(tmp) / f"{name}.jpg"
            open_image(sample).resize(size, Image.BICUBIC).save(path, quality=90)
            preprocess.load(path)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                preprocess.load(path)
                seconds.append(time.perf_counter() - start)
            timings[f"{name}_ms"] = 1000 * statistics.median(seconds)
    return timings


def per_busy_core(entries: list[dict]) -> tuple[float, dict]:
    """Images/s per busy core of the Ray run with the most workers (the one that uses the machine best): its rate
    after the first rows over the cores the machine kept busy during it. A worker of one CPU uses more than one
    core (it reads its next photos on other threads), so cores, not workers, are what a cluster must supply."""
    run = max((e for e in entries if e["workers"]), key=lambda e: e["workers"])
    return run["steady_images_per_second"] / run["busy_cores"], run


def estimate(per_core: float, extra_ms: float, core_counts=(16, 64, 256)) -> list[dict]:
    """Hours for a million photos on C cores, at ``per_core`` images/s (small photos), and with ``extra_ms`` more
    per image for full-size ones."""
    rows = []
    for photos, per_image in (("small (Flickr8k-sized)", 1 / per_core),
                              ("12 MP JPEGs", 1 / per_core + extra_ms / 1000)):
        core_hours = MILLION * per_image / 3600
        rows.append({"photos": photos, "core_hours": core_hours, "hours": {c: core_hours / c for c in core_counts}})
    return rows


def render_markdown(result: dict) -> str:
    from imgsum.eval.machine import machine_line

    base = result["entries"][0]["images_per_second"]
    lines = [f"Measured {result['date']} on {machine_line(result['machine'])}; {result['images']} Flickr8k test "
             f"images, model `{result['model']}`, batch {result['batch_size']}, one run. Other work on the machine "
             f"kept {result['background_cores']:.2f} of its {result['machine']['cores']} cores busy before the run"
             + (" (the figures are disturbed by it)." if result["background_cores"] > 0.1 else "."), "",
             f"Ray start-up (a local instance): {result['ray_start_seconds']:.1f} s, not included below.", "",
             "| system | seconds | images/s | vs one process | first rows after | images/s after the first rows "
             "| busy cores | same captions |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in result["entries"]:
        first = f"{e['first_rows_seconds']:.1f} s" if e.get("first_rows_seconds") is not None else ""
        steady = f"{e['steady_images_per_second']:.1f}" if e.get("steady_images_per_second") else ""
        same = "" if e["workers"] is None else ("yes" if e["same_captions"] else "**no**")
        lines.append(f"| {e['system']} | {e['seconds']:.1f} | {e['images_per_second']:.1f} | "
                     f"{e['images_per_second'] / base:.2f}x | {first} | {steady} | {e['busy_cores']:.2f} | {same} |")
    reads = result["photo_read"]
    lines += ["", f"Reading and preprocessing one photo: {reads['small_224_ms']:.1f} ms at 224x224, "
                  f"{reads['large_12mp_ms']:.1f} ms for a 12 MP JPEG.", "",
              f"One million photos at {result['per_core_images_per_second']:.1f} images/s per busy core ("
              f"{result['per_core_from']}):", "",
              "| photos | core-hours | " + " | ".join(f"{c} cores" for c in result["estimate"][0]["hours"]) + " |",
              "| --- | --- | " + " | ".join("---" for _ in result["estimate"][0]["hours"]) + " |"]
    for row in result["estimate"]:
        lines.append(f"| {row['photos']} | {row['core_hours']:.1f} | "
                     + " | ".join(f"{h * 60:.0f} min" for h in row["hours"].values()) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    import ray

    from imgsum.eval.machine import machine_info, utc_now

    paths = [str(p) for p in test_images(args.data, args.images)]
    background = background_cores()
    logger.info("other work keeps %.2f cores busy", background)
    entries = []
    single, expected = single_process(paths, args.model, args.batch_size)
    entries.append(single)
    logger.info("%s: %.1f images/s", single["system"], single["images_per_second"])
    ray_start = start_ray(args.ray_cpus)
    logger.info("Ray started in %.1f s", ray_start)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers in args.workers:
                entry, rows = on_ray(paths, args.model, workers, args.batch_size, Path(tmp) / f"workers-{workers}")
                entry["same_captions"] = rows == expected
                entries.append(entry)
                logger.info("%s: %.1f images/s (%.1f after the first rows), same captions: %s", entry["system"],
                            entry["images_per_second"], entry["steady_images_per_second"], entry["same_captions"])
    finally:
        ray.shutdown()
    reads = large_photo_read_ms(args.model)
    per_core, basis = per_busy_core(entries)
    return {"imgsum_ray_benchmark": 1, "date": utc_now(), "machine": machine_info(), "model": args.model,
            "images": len(paths), "batch_size": args.batch_size, "background_cores": background,
            "ray_start_seconds": ray_start, "ray_cpus": args.ray_cpus, "entries": entries, "photo_read": reads,
            "per_core_images_per_second": per_core,
            "per_core_from": f"{basis['system']}: {basis['steady_images_per_second']:.1f} images/s after the first "
                             f"rows, {basis['busy_cores']:.2f} cores busy",
            "estimate": estimate(per_core, reads["large_12mp_ms"] - reads["small_224_ms"]),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(FLICKR8K_CAPTIONS),
                   help="caption file whose test split gives the images (default: under $IMGSUM_DATA: %(default)s)")
    p.add_argument("--images", type=int, default=500, help="images (default: %(default)s)")
    p.add_argument("--model", default="default")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray workers to measure (default: 1 2)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance (default: %(default)s)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "scale", help="results folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray.json").write_text(json.dumps(result, indent=2) + "\n")
    table = render_markdown(result)
    (args.out / "ray.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
