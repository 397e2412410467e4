"""Encoder features, extracted once per (encoder, image set), cached on disk as fp16, reused by later runs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..files import write_text_atomic
from ..images import ImageError, open_image
from ..models.encoders import Encoder

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("IMGSUM_CACHE", Path.home() / ".cache" / "imgsum")) / "features"


@dataclass
class FeatureCache:
    """Grid features (images, regions, channels) as an fp16 memory map, with the image order."""

    folder: Path
    names: list[str]
    grid: np.ndarray  # (images, regions, channels) float16, memory-mapped

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def cache_key(encoder_name: str, paths: list[Path]) -> str:
    digest = hashlib.sha1(encoder_name.encode())
    for p in sorted(str(p.resolve()) for p in paths):
        digest.update(p.encode())
    return f"{encoder_name}-{digest.hexdigest()[:12]}"


def extract_features(
    encoder: Encoder,
    paths: list[Path],
    cache_dir: Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    device: torch.device | str = "cpu",
    mirror: bool = False,
) -> FeatureCache:
    """Encodes every image once (``mirror``: mirrored left to right), on ``device``; resumes an interrupted
    extraction where it stopped.

    Unreadable images get zero features and are logged; they are listed in ``bad.json``.
    """
    paths = sorted(paths, key=lambda p: p.name)
    folder = (cache_dir or default_cache_dir()) / cache_key(encoder.name + ("-mirror" if mirror else ""), paths)
    folder.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in paths]
    meta_path, grid_path = folder / "meta.json", folder / "grid.npy"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    device = torch.device(device)
    encoder = encoder.to(device)
    with torch.inference_mode():
        probe = encoder(torch.zeros(1, 3, encoder.preprocess.size, encoder.preprocess.size, device=device))[0]
    shape = (len(paths), probe.shape[1], probe.shape[2])
    if meta.get("names") != names or not grid_path.exists():
        meta = {"encoder": encoder.name, "names": names, "done": 0, "bad": []}
        np.lib.format.open_memmap(grid_path, mode="w+", dtype=np.float16, shape=shape).flush()
    done = int(meta["done"])
    if done < len(paths):
        grid = np.load(grid_path, mmap_mode="r+")
        _encode_into(encoder, paths, grid, meta, batch_size, workers, meta_path, device, mirror)
    logger.info("features: %d images in %s (%d unreadable)", len(paths), folder, len(meta["bad"]))
    return FeatureCache(folder, names, np.load(grid_path, mmap_mode="r"))


def _load(path: Path, size: int):
    try:
        return open_image(path, draft_size=size)
    except ImageError as err:
        return err


def _encode_into(encoder, paths, grid, meta, batch_size, workers, meta_path: Path, device: torch.device,
                 mirror: bool) -> None:
    size = encoder.preprocess.size
    start = int(meta["done"])
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(paths), initial=start, desc="mirrored features" if mirror else "features", unit="img") as bar:
        for lo in range(start, len(paths), batch_size):
            batch_paths = paths[lo : lo + batch_size]
            images = list(pool.map(lambda p: _load(p, size), batch_paths))
            good = [i for i, im in enumerate(images) if not isinstance(im, ImageError)]
            for i in set(range(len(images))) - set(good):
                logger.warning("features: skipping %s: %s", batch_paths[i], images[i])
                meta["bad"].append(batch_paths[i].name)
            out = np.zeros((len(images),) + grid.shape[1:], dtype=np.float16)
            if good:
                x = torch.from_numpy(encoder.preprocess([images[i] for i in good])).to(device)
                if mirror:
                    x = x.flip(-1)
                with torch.inference_mode():
                    out[good] = encoder(x)[0].cpu().numpy().astype(np.float16)
            grid[lo : lo + len(images)] = out
            grid.flush()
            meta["done"] = lo + len(images)
            write_text_atomic(meta_path, json.dumps(meta))
            bar.update(len(images))
