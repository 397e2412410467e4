"""Does a caption name what the photo shows? The rule of ``imagenet_dev`` (``../shared/data/README.md``),
and the count of degenerate captions.

A photo named like ``n02123045_tabby.jpg`` shows the ImageNet class with that WordNet synset. Its caption
names the subject when it contains, as whole words, a lemma of the synset or of a hypernym below the
generic ones (entity, animal, food ...), also with ``s``, ``es`` or ``y`` -> ``ies`` added. The lemmas
of the 1,000 classes come with the concept table (``scripts/build_concepts.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property
from pathlib import Path

from ..concepts import ConceptTable
from ..text import FREE_WORDS, ngrams

SYNSET_RE = re.compile(r"^(n\d{8})_")


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())


def _forms(lemma: str) -> set[str]:
    base = _words(lemma)
    forms = {base, base + "s", base + "es"}
    if base.endswith("y"):
        forms.add(base[:-1] + "ies")
    return forms


class SubjectRule:
    """``rule.names(caption, image_name)``: True, False, or None when the name holds no known synset."""

    def __init__(self, table: ConceptTable | None = None) -> None:
        self.table = table or ConceptTable.load()

    @cached_property
    def _forms(self) -> dict[str, set[str]]:
        return {c["wnid"]: {f for lemma in c["subject"] for f in _forms(lemma)} for c in self.table.classes}

    def synset(self, image: str | Path) -> str | None:
        m = SYNSET_RE.match(Path(image).name)
        return m.group(1) if m and m.group(1) in self._forms else None

    def names(self, caption: str, image: str | Path) -> bool | None:
        wnid = self.synset(image)
        if wnid is None:
            return None
        text = f" {_words(caption)} "
        return any(f" {form} " in text for form in self._forms[wnid])


def is_degenerate(caption: str) -> bool:
    """A word other than :data:`FREE_WORDS`, or a two- or three-word sequence, said three times or more."""
    words = caption.lower().split()
    if any(n >= 3 for w, n in Counter(words).items() if w not in FREE_WORDS):
        return True
    return any(n >= 3 for size in (2, 3) for n in ngrams(words, size).values())
