"""How far a figure measured on a sample of photos could move on another sample: bootstrap intervals over photos.

Corpus CIDEr-D is the mean of the photos' own CIDEr-D (the document frequencies come from the references, the same
for every model scored on a split), and the named share of ``imgsum eval --subjects`` is the mean of one yes or no
per photo; so both are means over photos, and resampling the photos with replacement (the percentile bootstrap,
Efron and Tibshirani 1993) says how much of a figure, or of the difference between two models' figures on the same
photos (the paired bootstrap, Koehn 2004), is the sample's. Plain numpy: the whole method is a few lines.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

LEVEL = 0.95
SAMPLES = 2000


def _resampled_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """The means of ``samples`` resamples (with replacement, of the same size) of ``values`` (photos,)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(samples, len(values)))
    return values[picks].mean(1)


def _as_array(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not len(array):
        raise ValueError("a bootstrap needs one value per photo, for at least one photo")
    if not np.isfinite(array).all():
        raise ValueError("a bootstrap needs finite values")
    return array


def interval(values: Sequence[float], level: float = LEVEL, samples: int = SAMPLES, seed: int = 0) -> dict:
    """The mean of ``values`` (one per photo) and its ``level`` percentile bootstrap interval:
    ``{"mean", "low", "high", "level", "samples", "photos"}``."""
    array = _as_array(values)
    return _summary(array, _resampled_means(array, samples, seed), level)


def paired(before: Sequence[float], after: Sequence[float], level: float = LEVEL, samples: int = SAMPLES,
           seed: int = 0) -> dict:
    """How much ``after`` gains on ``before``, photo by photo (the same photos in the same order): the mean
    difference, its ``level`` bootstrap interval, and ``better``, the share of resamples in which ``after`` scores
    more (near 0.5: no telling them apart; above 0.975 or below 0.025: a difference at the 95% level)."""
    a, b = _as_array(before), _as_array(after)
    if len(a) != len(b):
        raise ValueError(f"a paired bootstrap needs the same photos: {len(a)} values against {len(b)}")
    means = _resampled_means(b - a, samples, seed)
    return {**_summary(b - a, means, level), "better": float((means > 0).mean())}


def _summary(values: np.ndarray, means: np.ndarray, level: float) -> dict:
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "level": level,
            "samples": len(means), "photos": len(values)}
