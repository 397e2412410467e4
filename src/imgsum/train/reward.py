"""CIDEr-D as a reward for self-critical sequence training (Rennie et al. 2017).

The same formula as coco-caption's CIDEr-D (clipped tf-idf n-gram vectors, n = 1..4, Gaussian length
penalty with sigma 6, times 10), with document frequencies fixed once from the training references,
as SCST implementations do, so that a caption's reward does not depend on its batch.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Mapping, Sequence

from ..text import ngrams

N = 4
SIGMA = 6.0
Vector = tuple[list[dict[tuple[str, ...], float]], list[float], int]


def _ngrams(words: Sequence[str]) -> Counter:
    """Every 1- to N-word sequence of ``words``, counted."""
    counts: Counter = Counter()
    for n in range(1, N + 1):
        counts.update(ngrams(words, n))
    return counts


class CiderD:
    """``CiderD(references).score(image, words)``: CIDEr-D of one tokenised caption against ``image``'s references."""

    def __init__(self, references: Mapping[str, Sequence[Sequence[str]]]) -> None:
        df: Counter = Counter()
        for refs in references.values():
            df.update({g for r in refs for g in _ngrams(r)})
        self.df = df
        self.log_images = math.log(float(len(references)))
        self.refs = {k: [self._vector(_ngrams(r)) for r in v] for k, v in references.items()}

    def _vector(self, counts: Counter) -> Vector:
        vec: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(N)]
        norm = [0.0] * N
        length = 0
        for gram, tf in counts.items():
            n = len(gram) - 1
            v = tf * (self.log_images - math.log(max(1.0, self.df[gram])))
            vec[n][gram] = v
            norm[n] += v * v
            if n == 1:  # coco-caption counts the length on bigrams
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def score(self, image: str, words: Sequence[str]) -> float:
        hyp, hyp_norm, hyp_len = self._vector(_ngrams(words))
        total = 0.0
        for ref, ref_norm, ref_len in self.refs[image]:
            penalty = math.exp(-((hyp_len - ref_len) ** 2) / (2 * SIGMA**2))
            for n in range(N):
                dot = sum(min(v, ref[n].get(g, 0.0)) * ref[n].get(g, 0.0) for g, v in hyp[n].items())
                if hyp_norm[n] and ref_norm[n]:
                    total += dot / (hyp_norm[n] * ref_norm[n]) * penalty
        return 10.0 * total / N / len(self.refs[image])
