"""Train/dev/test splits by image, so that no image's captions end up on both sides of a split."""

from __future__ import annotations

import random
from collections.abc import Mapping, Set as AbstractSet

from imgsum.data.formats import CaptionData

SPLITS = ("train", "dev", "test")


def split_by_image(data: CaptionData, dev: float = 0.1, test: float = 0.1, seed: int = 0) -> dict[str, list[str]]:
    """Image names by split (``train``, ``dev``, ``test``), each list sorted.

    The splits of ``data`` are used when it has them (restricted to images with captions; images in
    none of them stay out). Otherwise the captioned images are shuffled with ``seed`` and the fractions
    ``dev`` and ``test`` of them set aside; the rest is ``train``. Same data and seed, same split.
    """
    if data.splits is not None:
        return _given_splits(data.splits, data.captions.keys())
    if not (0 <= dev < 1 and 0 <= test < 1 and dev + test < 1):
        raise ValueError(f"dev={dev} and test={test} must be fractions in [0, 1) that sum to less than 1")
    images = sorted(data.captions)
    random.Random(seed).shuffle(images)
    n_test, n_dev = round(len(images) * test), round(len(images) * dev)
    chosen = {"test": images[:n_test], "dev": images[n_test:n_test + n_dev], "train": images[n_test + n_dev:]}
    return {split: sorted(chosen[split]) for split in SPLITS}


def _given_splits(splits: Mapping[str, list[str]], captioned: AbstractSet[str]) -> dict[str, list[str]]:
    """The given splits, sorted and keeping captioned images only; ``ValueError`` if two share an image."""
    result: dict[str, list[str]] = {split: [] for split in SPLITS}
    result.update({split: sorted(captioned & set(names)) for split, names in splits.items()})
    seen: set[str] = set()
    for split, names in result.items():
        shared = seen.intersection(names)
        if shared:
            raise ValueError(f"split {split!r} shares {len(shared)} images with another split, e.g. {min(shared)}")
        seen.update(names)
    return result
