"""Visual concepts: the encoder's ImageNet class probabilities as caption words, torch-free.

The concept table (``assets/imagenet_concepts.json``, built by ``scripts/build_concepts.py``) maps
each class to words people write in captions ("Egyptian cat" -> "egyptian cat", "cat"). A word's
probability is the sum of its classes' probabilities, so 120 dog breeds at 0.005 each say "dog" at 0.6.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from .text import SPECIALS, agree_articles

TABLE = Path(__file__).parent / "assets" / "imagenet_concepts.json"
NONE = "<none>"  # concept 0: an empty slot
FIRST_SLOT = len(SPECIALS)  # the vocabulary's id of <c0>, the first slot token (see slot_tokens)


@dataclass
class Concept:
    word: str
    p: float

    def to_dict(self) -> dict:
        return {"word": self.word, "p": round(self.p, 4)}


class ConceptTable:
    """Concept ids are 1..N (0 pads); ``words[i]`` is concept ``i``'s word."""

    def __init__(self, table: dict) -> None:
        self.table = table
        self.words: list[str] = [NONE] + [c["word"] for c in table["concepts"]]
        self.plurals: list[str] = [NONE] + [c["plural"] for c in table["concepts"]]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.classes = table["classes"]

    @classmethod
    def load(cls, path: str | Path = TABLE) -> "ConceptTable":
        return cls(json.loads(Path(path).read_text()))

    def __len__(self) -> int:
        return len(self.words)

    def pairs(self) -> list[list[str]]:
        """(word, plural) by concept id, as a model's metadata stores them."""
        return [[w, p] for w, p in zip(self.words, self.plurals)]

    @cached_property
    def class_words(self) -> np.ndarray:
        """(classes, concepts) 0/1: which words each class gives."""
        m = np.zeros((len(self.classes), len(self.words)), dtype=np.float32)
        for i, c in enumerate(self.classes):
            m[i, [self.index[w] for w in c["words"]]] = 1.0
        return m

    @cached_property
    def ancestors(self) -> np.ndarray:
        """(concepts, depth) WordNet node ids + 1 of each concept and its hypernyms, 0-padded."""
        rows = [[]] + [[a + 1 for a in c["ancestors"]] for c in self.table["concepts"]]
        out = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    @property
    def num_nodes(self) -> int:
        return len(self.table["nodes"]) + 1

    @cached_property
    def _phrases(self) -> dict[tuple[str, ...], int]:
        # Latest first: a phrase two concepts share ("sunglasses") is the later one's.
        pairs = list(zip(self.words, self.plurals))[1:]
        return _phrase_table(reversed([(pair, (i, i)) for i, pair in enumerate(pairs, 1)]))

    def find(self, words: list[str]) -> list[int]:
        """Concept ids named in a tokenised caption, longest phrases first, in order of appearance."""
        table = self._phrases
        return list(dict.fromkeys(table[m] for m in _scan(words, table) if isinstance(m, tuple)))


MAX_PHRASE = 3  # the longest concept phrase, in words, that a caption's words are matched against


def _phrase_table(entries) -> dict[tuple[str, ...], object]:
    """((word, plural), (its value, its plural's value)) entries -> {phrase as a word tuple: value}; the first
    entry to claim a phrase keeps it."""
    table: dict[tuple[str, ...], object] = {}
    for phrases, values in entries:
        for phrase, value in zip(phrases, values):
            table.setdefault(tuple(phrase.split()), value)
    return table


def _scan(words: list[str], table: dict) -> list:
    """The caption's words, left to right, each phrase of ``table`` (longest first, up to MAX_PHRASE words)
    taken whole as a tuple, any other word as itself."""
    out, i = [], 0
    while i < len(words):
        n = next((n for n in range(MAX_PHRASE, 0, -1) if tuple(words[i : i + n]) in table), 0)
        out.append(tuple(words[i : i + n]) if n else words[i])
        i += max(n, 1)
    return out


SLOT_RE = re.compile(r"^<c(\d+)(s?)>$")


def slot_tokens(k: int) -> list[str]:
    """The vocabulary's slot tokens: ``<cK>`` says slot K's word, ``<cKs>`` its plural."""
    return [f"<c{i}>" for i in range(k)] + [f"<c{i}s>" for i in range(k)]


def to_slots(words: list[str], slots: Sequence[Sequence[str]]) -> list[str]:
    """Caption words with each phrase that is a slot's (word, plural) replaced by ``<cK>``/``<cKs>``."""
    table = _phrase_table(((w, pl), (f"<c{k}>", f"<c{k}s>")) for k, (w, pl) in enumerate(slots) if w != NONE)
    return [table[m] if isinstance(m, tuple) else m for m in _scan(words, table)]


def render_slots(tokens: list[str], slots: Sequence[Sequence[str]]) -> str:
    """Caption tokens as text, each slot token replaced by its slot's (word, plural), each article made to
    agree with the word it now stands before ("a <c0>" with "abacus" -> "an abacus")."""
    out = []
    for t in tokens:
        m = SLOT_RE.match(t)
        out.append(t if m is None else slots[int(m.group(1))][1 if m.group(2) else 0])
    return " ".join(agree_articles(out))
