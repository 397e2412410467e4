"""Caption text: the tokenizer and the vocabulary (built from the training split only)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Hashable, Iterable, Sequence

TOKEN_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
#: Words a caption may say three times or more; any other word said three times makes it degenerate.
FREE_WORDS = ("a", "the", "and", "in", "on", "of", "with")
#: Words spelt with a vowel first and said with a consonant ("a unicycle", "a one-man band"), and the reverse
#: ("an hour"): English's exceptions to choosing "a" or "an" by the next word's first letter.
CONSONANT_SOUND = ("uni", "use", "usu", "uti", "ura", "uro", "eu", "ewe", "one", "once")
VOWEL_SOUND = ("hour", "honest", "honor", "honour", "heir")


def tokenize(text: str) -> list[str]:
    """Lower-cases and splits into words; numbers ("2") and hyphenated words ("t-shirt") are kept whole."""
    return TOKEN_RE.findall(text.lower())


def ngrams(words: Sequence[Hashable], n: int) -> Counter:
    """The ``n``-word sequences of ``words`` (strings or token ids), as tuples, counted."""
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def article(word: str) -> str:
    """ "an" before a word said with a vowel first, else "a"."""
    w = word.lower()
    vowel = (w[:1] in ("a", "e", "i", "o", "u") and not w.startswith(CONSONANT_SOUND)) or w.startswith(VOWEL_SOUND)
    return "an" if vowel else "a"


def agree_articles(words: list[str]) -> list[str]:
    """Each "a" or "an" made to agree with the word after it: a concept word said from a slot ("a <c0>")
    comes after an article chosen before the word was known ("a abacus" -> "an abacus")."""
    return [article(words[i + 1]) if w in ("a", "an") and i + 1 < len(words) and words[i + 1][:1].isalpha() else w
            for i, w in enumerate(words)]


class Vocabulary:
    """Maps words to ids and back; ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3
    #: Ids a caption never contains: decoding bans them (an <unk> would print as nothing).
    never_emitted = (pad_id, bos_id, unk_id)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 5, first: Iterable[str] = ()) -> "Vocabulary":
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical), after ``first``
        (the concept slot tokens, say)."""
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*first, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids with <bos> first and <eos> last."""
        return [self.bos_id] + [self.stoi.get(w, self.unk_id) for w in tokenize(text)] + [self.eos_id]

    def words(self, ids: Iterable[int]) -> list[str]:
        """The tokens up to the first <eos>, specials dropped."""
        words: list[str] = []
        for i in ids:
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                words.append(self.itos[i])
        return words

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first <eos>, specials dropped, joined by spaces."""
        return " ".join(self.words(ids))

    def to_list(self) -> list[str]:
        return list(self.itos)

    @classmethod
    def from_list(cls, itos: list[str]) -> "Vocabulary":
        if list(itos[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError("vocabulary does not start with the special tokens")
        return cls(itos[len(SPECIALS) :])
