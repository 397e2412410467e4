"""Text-only training examples: captions without images (Flickr30k's, say), given the concepts their own
words name, made noisy like the classifier's, so that the decoder learns sentences about many more
subjects than its images show, and learns to trust a confident concept (ViECap, Fei et al. 2023).

A caption that says "a cat on a sofa" names the concepts "cat" and "sofa". Each is kept with
probability ``1 - drop``, as the words of one ImageNet class that gives it (a tabby gives "tabby cat"
and "cat"), at a probability drawn like a classifier's; 0 to 3 distracting classes are added at low
probabilities; the ``slots`` most probable fill the slots.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from ..concepts import ConceptTable, to_slots
from ..text import tokenize


@dataclass
class TextCaptions:
    """Tokenised captions and the concept ids each names."""

    words: list[list[str]]
    named: list[list[int]]

    @classmethod
    def load(cls, path: str | Path, table: ConceptTable, max_words: int, split: str | Path | None = None) -> "TextCaptions":
        """Reads an ``image,caption`` CSV (Flickr30k's ``captions.txt``), keeping the images listed in ``split``."""
        keep = set(Path(split).read_text().split()) if split else None
        words = []
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if keep is None or row["image"] in keep:
                    w = tokenize(row["caption"])[:max_words]
                    if w:
                        words.append(w)
        return cls(words, [table.find(w) for w in words])

    def __add__(self, other: "TextCaptions") -> "TextCaptions":
        return TextCaptions(self.words + other.words, self.named + other.named)

    def __mul__(self, times: int) -> "TextCaptions":
        return TextCaptions(self.words * times, self.named * times)


class NoisyConcepts:
    """Draws the concept slots of a text-only caption."""

    def __init__(self, table: ConceptTable, slots: int, drop: float = 0.15, distractors: int = 3) -> None:
        self.table, self.slots, self.drop, self.distractors = table, slots, drop, distractors
        self.classes_of: dict[int, list[int]] = {}
        for ci, c in enumerate(table.classes):
            for w in c["words"]:
                self.classes_of.setdefault(table.index[w], []).append(ci)

    def _add_class(self, p: dict[int, float], ci: int, prob: float) -> None:
        for w in self.table.classes[ci]["words"]:
            wi = self.table.index[w]
            p[wi] = max(p.get(wi, 0.0), prob)

    def draw(self, named: list[int], rng: random.Random) -> tuple[list[int], list[float]]:
        """Concept ids and probabilities, ``slots`` of each (0-padded), most probable first."""
        p: dict[int, float] = {}
        for cid in named:
            if rng.random() >= self.drop:
                self._add_class(p, rng.choice(self.classes_of[cid]), rng.uniform(0.25, 1.0))
        for _ in range(rng.randint(0, self.distractors)):
            self._add_class(p, rng.randrange(len(self.table.classes)), 0.35 * rng.random() ** 2)
        best = sorted(p.items(), key=lambda kv: -kv[1])[: self.slots]
        pad = self.slots - len(best)
        return [i for i, _ in best] + [0] * pad, [q for _, q in best] + [0.0] * pad


def slot_targets(words: list[str], ids: list[int], table: ConceptTable) -> list[str]:
    """A caption's words with each phrase naming a slot's concept replaced by its slot token."""
    return to_slots(words, [(table.words[i], table.plurals[i]) for i in ids])
