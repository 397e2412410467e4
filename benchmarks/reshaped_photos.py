"""Flickr8k's photos as everyday photos are shaped: the data set's images are stretched to 224 x 224 (the originals'
aspect ratio is lost), so a model reads every one of them the same way, whatever its ``concept_crop``. This writes a
split's photos stretched back to a landscape 4:3 (299 x 224), a stand-in for the shape of the photos people caption,
so that reading the whole photo and reading its centre can be compared on photos with reference captions:

    .venv/bin/python benchmarks/reshaped_photos.py --split dev --out /tmp/dev-4x3
    imgsum eval --split dev --images /tmp/dev-4x3 --model MODEL --no-agreement

A stand-in only: most Flickr photos are landscape, some portrait, and each original's own shape is not known.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from data_paths import FLICKR8K_CAPTIONS
from imgsum.data.formats import load_captions

SHAPE = (299, 224)  # 4:3, the shorter side the encoder's 224
log = logging.getLogger("reshaped_photos")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(FLICKR8K_CAPTIONS), help="the caption file (its images and splits beside it)")
    p.add_argument("--split", default="dev")
    p.add_argument("--out", type=Path, required=True, help="folder for the reshaped photos (same file names)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = load_captions(args.data)
    names = sorted(data.splits[args.split])
    args.out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc="reshape", unit="photo"):
        with Image.open(Path(data.image_dir) / name) as image:
            image.convert("RGB").resize(SHAPE, Image.BICUBIC).save(args.out / name, quality=95)
    log.info("%d photos of %s's %s split, %d x %d, in %s", len(names), args.data, args.split, *SHAPE, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
