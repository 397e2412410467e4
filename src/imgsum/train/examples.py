"""Training examples as tensors: image captions (one row per caption, pointing at its image) and text-only
captions, each with the concept slots its decoder sees and its words as token ids, a phrase that names a
slot's concept written as that slot's token."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..concepts import ConceptTable
from ..text import Vocabulary, tokenize
from .text_only import NoisyConcepts, TextCaptions, slot_targets


@dataclass
class Split:
    """Captions of one split as padded token ids, each row pointing at its image's feature row."""

    images: list[str]
    rows: np.ndarray  # (images,) rows of the feature cache
    concept_ids: torch.Tensor  # (images, slots) the classifier's concepts of each image
    concept_p: torch.Tensor  # (images, slots)
    tokens: torch.Tensor  # (captions, max_words) word ids, padded with 0
    image_of: torch.Tensor  # (captions,) index into ``images``
    references: dict[str, list[str]]
    words: list[list[str]]  # (captions,) each caption's words, before slot tokens replace its concepts' phrases

    def concepts(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        return self.concept_ids[idx], self.concept_p[idx]


def encode_words(words: list[str], concept_ids: list[int], table: ConceptTable, vocab: Vocabulary,
                 max_words: int) -> list[int]:
    tokens = slot_targets(words, concept_ids, table)[:max_words]
    return [vocab.stoi.get(w, vocab.unk_id) for w in tokens]


def build_split(names, captions, rows, concepts: tuple[torch.Tensor, torch.Tensor], table: ConceptTable,
                vocab: Vocabulary, max_words: int) -> Split:
    """``rows``: each image's feature row; ``concepts``: each image's (ids, p)."""
    tokens, image_of, words = [], [], []
    for i, name in enumerate(names):
        slots = concepts[0][i].tolist()
        for c in captions[name]:
            w = tokenize(c)
            ids = encode_words(w, slots, table, vocab, max_words)
            if ids:
                tokens.append(ids + [0] * (max_words - len(ids)))
                image_of.append(i)
                words.append(w[:max_words])
    return Split(list(names), np.asarray(rows), concepts[0], concepts[1], torch.tensor(tokens),
                 torch.tensor(image_of), {n: captions[n] for n in names}, words)


def targets(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Words then <eos>, padded with 0: (captions, max_words + 1)."""
    padded = F.pad(tokens, (0, 1))
    lengths = (tokens != 0).sum(1)
    return padded.scatter(1, lengths[:, None], eos_id)


def mirror_words(tokens: torch.Tensor, flip: torch.Tensor, vocab: Vocabulary) -> torch.Tensor:
    """``tokens`` (captions, words) with left and right swapped in the captions ``flip`` marks: those of
    mirrored photos."""
    swap = torch.arange(len(vocab))
    left, right = vocab.stoi.get("left"), vocab.stoi.get("right")
    if left is not None and right is not None:
        swap[left], swap[right] = right, left
    return torch.where(flip[:, None], swap[tokens], tokens)


@dataclass
class TextBatch:
    """Captions given the concepts their own words name (noisy): text-only ones (``image`` -1), and image captions
    shown with their image (``image``: its index among the batch's images)."""

    concept_ids: torch.Tensor  # (captions, slots)
    concept_p: torch.Tensor
    tokens: torch.Tensor  # (captions, max_words)
    image: torch.Tensor  # (captions,) the batch's image each is shown with, -1 for none

    def to(self, device: torch.device) -> "TextBatch":
        return TextBatch(self.concept_ids.to(device), self.concept_p.to(device), self.tokens.to(device),
                         self.image.to(device))

    def __add__(self, other: "TextBatch") -> "TextBatch":
        return TextBatch(*(torch.cat([a, b]) for a, b in zip(
            (self.concept_ids, self.concept_p, self.tokens, self.image),
            (other.concept_ids, other.concept_p, other.tokens, other.image))))


class TextExamples:
    """Draws batches of text-only captions, in a shuffled order that goes on across epochs."""

    def __init__(self, text: TextCaptions, table: ConceptTable, vocab: Vocabulary, slots: int, max_words: int,
                 seed: int) -> None:
        self.text, self.table, self.vocab, self.max_words = text, table, vocab, max_words
        self.noise = NoisyConcepts(table, slots)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.text.words)

    def batch(self, step: int, size: int, keep: Sequence[int] | None = None) -> TextBatch:
        """The ``step``-th batch: the same for the same step, so that a resumed run sees what it would have.
        ``keep``: the positions of it to make (a process's share; all by default); every draw is still taken,
        so that a position gets the same caption and concepts whichever positions are kept."""
        rng = random.Random(self.seed * 1_000_003 + step)
        picks = [rng.randrange(len(self)) for _ in range(size)]
        draws = [self.noise.draw(self.text.named[i], rng) for i in picks]
        kept = range(size) if keep is None else keep
        return self.encode([self.text.words[picks[j]] for j in kept], [draws[j] for j in kept])

    def own_concepts(self, words: Sequence[list[str]], images: torch.Tensor, share: float, step: int) -> TextBatch:
        """Image captions (``words``, each shown with its batch image ``images``), a drawn ``share`` of them, given
        the concepts their own words name instead of the classifier's: with the picture in view, a concept in a
        slot is what the caption says (the same ``step`` draws the same)."""
        rng = random.Random(self.seed * 1_000_003 + step + 500_009)
        chosen = [j for j in range(len(words)) if rng.random() < share]
        draws = [self.noise.draw(self.table.find(words[j]), rng) for j in chosen]
        return self.encode([words[j] for j in chosen], draws, images[chosen])

    def encode(self, words: Sequence[list[str]], draws: Sequence[tuple[list[int], list[float]]],
               images: torch.Tensor | None = None) -> TextBatch:
        """Captions with their drawn concepts (ids, p) as a batch; ``images``: what each is shown with (none)."""
        toks = []
        for w, (cid, _) in zip(words, draws):
            t = encode_words(w, cid, self.table, self.vocab, self.max_words)
            toks.append(t + [0] * (self.max_words - len(t)))
        slots = self.noise.slots
        return TextBatch(torch.tensor([d[0] for d in draws], dtype=torch.long).reshape(-1, slots),
                         torch.tensor([d[1] for d in draws], dtype=torch.float32).reshape(-1, slots),
                         torch.tensor(toks, dtype=torch.long).reshape(-1, self.max_words),
                         torch.full((len(toks),), -1, dtype=torch.long) if images is None else images.long())
