"""Where the project's tests and benchmarks find the real data sets: one place, one setting.

``$IMGSUM_DATA`` names the folder that holds ``flickr8k/`` (and ``flickr30k_captions/``); unset, it is
``../shared/data`` beside the repository. The installed library never reads this module: ``imgsum eval``
takes its caption file from ``--data`` (or the same ``$IMGSUM_DATA``).

Tests import it by name (``pyproject.toml`` puts ``benchmarks/`` on pytest's path); the benchmark
scripts beside it import it the same way when run as ``python benchmarks/NAME.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "IMGSUM_DATA"
ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$IMGSUM_DATA`` if set, else ``../shared/data`` beside the repository."""
    configured = os.environ.get(ENV)
    return Path(configured).expanduser().resolve() if configured else ROOT.parent / "shared" / "data"


DATA = data_root()
FLICKR8K = DATA / "flickr8k"
#: The caption file; the standard split files and ``images/`` lie beside it.
FLICKR8K_CAPTIONS = FLICKR8K / "Flickr8k.token.txt"
FLICKR30K_CAPTIONS = DATA / "flickr30k_captions" / "captions.txt"


def flickr8k_present() -> bool:
    """Whether the Flickr8k images are there (tests that need them skip when not)."""
    return (FLICKR8K / "images").is_dir()


#: 500 photos, one per ImageNet class, named by their synset (``n02123045_tabby.jpg``): ``imgsum eval --subjects``.
IMAGENET_DEV = DATA / "imagenet_dev"


def imagenet_dev_present() -> bool:
    """Whether the ``imagenet_dev`` photos are there (tests that need them skip when not)."""
    return IMAGENET_DEV.is_dir()
