"""What the shipped ``lstm``'s int8 encoder buys and costs: the float and the int8 encoder measured in one run.

    .venv/bin/python benchmarks/int8_encoder.py          # writes results/int8_encoder.md and .json

- The encoder alone, one thread (as each image worker runs it), batches of 16 over the first 200 Flickr8k dev
  photos: milliseconds a photo, and how close the int8 features are to the float ones (pooled features' cosine
  similarity; the grid's relative error).
- The ``lstm`` at beam 3 on ONNX Runtime, batch captioning of the first 500 Flickr8k test photos from disk
  (``Captioner.caption_batch``, batches of 16), the two encoders taking turns, ``--rounds`` each: photos/s.
- The same one photo at a time (``Captioner.caption``), 60 test photos, the two encoders in turn on each: ms.

Quality is not measured here: ``imgsum eval`` gives it (``docs/experiments.md``, "The int8 encoder, shipped").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from data_paths import FLICKR8K_CAPTIONS
from imgsum.api import Captioner
from imgsum.data.formats import load_captions
from imgsum.eval.machine import machine_info, machine_line, utc_now
from imgsum.pretrained import shipped_path
from imgsum.quantize import pooled_cosine
from imgsum.runtime import read_bundle
from imgsum.runtime.ort import OnnxCaptionModel, OnnxEncoder

HERE = Path(__file__).resolve().parent


def encoder_figures(bundle, pixels: np.ndarray, batch: int = 16) -> dict:
    """Per-photo time of each encoder (one thread) and the int8 features' distance from the float ones."""
    outputs, ms = {}, {}
    for kind, file in (("float", bundle.float_encoder), ("int8", bundle.encoder)):
        encoder = OnnxEncoder(bundle.path(file), threads=1)
        encoder(pixels[:batch])  # warm-up
        start, grids, pooled = time.perf_counter(), [], []
        for i in range(0, len(pixels), batch):
            g, p = encoder(pixels[i : i + batch])
            grids.append(g)
            pooled.append(p)
        ms[kind] = (time.perf_counter() - start) / len(pixels) * 1000
        outputs[kind] = np.concatenate(grids), np.concatenate(pooled)
    (fg, fp), (qg, qp) = outputs["float"], outputs["int8"]
    cosine = pooled_cosine(fp, qp)
    return {"photos": len(pixels), "ms_per_photo": ms, "speedup": ms["float"] / ms["int8"],
            "pooled_cosine_min": float(cosine.min()), "pooled_cosine_mean": float(cosine.mean()),
            "grid_relative_error": float(np.linalg.norm(qg - fg) / np.linalg.norm(fg))}


def captioners(bundle) -> dict[str, Captioner]:
    return {"float": Captioner(OnnxCaptionModel(bundle, float_encoder=True), "lstm"),
            "int8": Captioner(OnnxCaptionModel(bundle), "lstm")}


def throughput(models: dict[str, Captioner], paths: list[Path], rounds: int) -> dict:
    """The lstm's batch photos/s with each encoder, the two taking turns (which goes first alternates)."""
    for captioner in models.values():
        captioner.caption_batch(paths[:64], beam=3)  # warm-up: sessions made, files cached
    rates: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for kind in (("float", "int8") if r % 2 == 0 else ("int8", "float")):
            start = time.perf_counter()
            models[kind].caption_batch(paths, beam=3)
            rates[kind].append(len(paths) / (time.perf_counter() - start))
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {"photos": len(paths), "rounds": rounds, "images_per_second": rates, "median": median,
            "ratio": median["int8"] / median["float"]}


def latency(models: dict[str, Captioner], paths: list[Path]) -> dict:
    """One photo at a time (``Captioner.caption``, beam 3), the two encoders on the same photo in turn:
    the median and 95th percentile of each, in ms."""
    for captioner in models.values():
        captioner.caption(paths[0], beam=3)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in models}
    for i, path in enumerate(paths):
        for kind in (("float", "int8") if i % 2 == 0 else ("int8", "float")):
            start = time.perf_counter()
            models[kind].caption(path, beam=3)
            times[kind].append((time.perf_counter() - start) * 1000)
    return {"photos": len(paths), "median_ms": {k: statistics.median(v) for k, v in times.items()},
            "p95_ms": {k: float(np.percentile(v, 95)) for k, v in times.items()}}


def markdown(report: dict) -> str:
    e, t, l = report["encoder"], report["lstm_batch"], report["lstm_single"]
    return "\n".join([
        "# The `lstm`'s int8 encoder against the float one", "",
        f"Measured {report['date']} on {report['machine_line']}: `.venv/bin/python benchmarks/int8_encoder.py`.", "",
        "| measure | float encoder | int8 encoder | int8 / float |", "| --- | --- | --- | --- |",
        f"| encoder alone, one thread, ms a photo ({e['photos']} dev photos, batches of 16) | "
        f"{e['ms_per_photo']['float']:.2f} | {e['ms_per_photo']['int8']:.2f} | {e['speedup']:.2f}x as fast |",
        f"| `lstm` beam 3, batch captioning of {t['photos']} test photos from disk, photos/s (median of "
        f"{t['rounds']}, the two taking turns) | {t['median']['float']:.1f} | {t['median']['int8']:.1f} | "
        f"{t['ratio']:.2f}x |",
        f"| `lstm` beam 3, one photo at a time, ms, median (p95) of {l['photos']} test photos, the two in turn | "
        f"{l['median_ms']['float']:.1f} ({l['p95_ms']['float']:.1f}) | {l['median_ms']['int8']:.1f} "
        f"({l['p95_ms']['int8']:.1f}) | {l['median_ms']['int8'] / l['median_ms']['float']:.2f}x the time |", "",
        f"The int8 encoder's pooled features against the float one's: cosine similarity min {e['pooled_cosine_min']:.4f}, "
        f"mean {e['pooled_cosine_mean']:.4f}; the grid's relative error {e['grid_relative_error']:.3f}.", ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(FLICKR8K_CAPTIONS))
    p.add_argument("--rounds", type=int, default=4, help="batch runs of each encoder (default 4)")
    p.add_argument("--out", default=str(HERE / "results" / "int8_encoder"), help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    bundle = read_bundle(shipped_path("lstm", "onnx"))
    if not bundle.int8_encoder:
        raise SystemExit(f"{bundle.manifest} has no int8 encoder (imgsum export --int8-encoder)")
    data = load_captions(args.data)
    dev = [data.image_dir / n for n in sorted(data.splits["dev"])[:200]]
    test = [data.image_dir / n for n in sorted(data.splits["test"])[:500]]
    pixels = np.concatenate([bundle.info.preprocess.load(p) for p in dev])
    machine, models = machine_info(), captioners(bundle)
    report = {"date": utc_now(), "machine": machine, "machine_line": machine_line(machine),
              "encoder": encoder_figures(bundle, pixels), "lstm_batch": throughput(models, test, args.rounds),
              "lstm_single": latency(models, test[:60])}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
