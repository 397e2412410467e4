"""Human agreement: how well one person's caption matches the others', for scale beside the model's scores.

With ``k`` references per image there are ``k`` folds. In fold ``i``, reference ``i`` of every image is
the candidate and the other ``k - 1`` are its references; the model's caption is scored against the
very same ``k - 1`` references. Each side's figure is the mean over the folds, so the two are
comparable (both against ``k - 1`` references), unlike the model's usual score against all ``k``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Mapping, Sequence

logger = logging.getLogger(__name__)

#: (references by id, one candidate by id) -> corpus metrics
ScoreFn = Callable[[Mapping[str, Sequence[str]], Mapping[str, str]], dict]


def agreement_sets(refs: Mapping[str, Sequence[str]], k: int | None = None) -> tuple[dict[str, list[str]], int]:
    """The images used for agreement, each with exactly ``k`` references, and ``k``.

    ``k`` defaults to the smallest reference count among images with at least two; images with fewer
    than ``k`` references are left out, and those with more keep their first ``k``.
    """
    counts = Counter(len(v) for v in refs.values())
    if k is None:
        usable = [n for n in counts if n >= 2]
        if not usable:
            raise ValueError("human agreement needs at least two references per image; no image has two")
        k = min(usable)
    if k < 2:
        raise ValueError(f"human agreement needs at least two references per image, not {k}")
    chosen = {img: list(v[:k]) for img, v in refs.items() if len(v) >= k}
    if not chosen:
        raise ValueError(f"no image has {k} references")
    left_out = len(refs) - len(chosen)
    if left_out:
        logger.warning("human agreement: %d of %d images have fewer than %d references and are left out",
                       left_out, len(refs), k)
    if any(len(v) > k for v in refs.values()):
        logger.info("human agreement: images with more than %d references use their first %d", k, k)
    return chosen, k


def human_agreement(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, str] | None, score: ScoreFn,
                    k: int | None = None, progress: bool = False) -> dict:
    """Leave-one-reference-out scores of the references (``human``) and of ``hyps`` (``model``).

    ``refs`` and ``hyps`` are tokenized the way ``score`` expects. Returns ``{"human": metrics,
    "model": metrics or None, "folds": {"human": [...], "model": [...]}, "references": k - 1,
    "images": n}``, where the metrics are the means over the ``k`` folds.
    """
    sets, k = agreement_sets(refs, k)
    folds: dict[str, list[dict]] = {"human": [], "model": []}
    rounds = range(k)
    if progress:
        from tqdm import tqdm

        rounds = tqdm(rounds, desc="human agreement", unit="fold", leave=False)
    for i in rounds:
        others = {img: v[:i] + v[i + 1 :] for img, v in sets.items()}  # (images, k - 1)
        folds["human"].append(score(others, {img: v[i] for img, v in sets.items()}))
        if hyps is not None:
            folds["model"].append(score(others, {img: hyps[img] for img in sets}))
    return {
        "human": _mean(folds["human"]),
        "model": _mean(folds["model"]) if hyps is not None else None,
        "folds": folds,
        "references": k - 1,
        "images": len(sets),
    }


def _mean(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
