"""The plural a slot token says (``scripts/build_concepts.py``'s rule), on made-up caption counts."""

from __future__ import annotations

from collections import Counter

from conftest import load_script

build_concepts = load_script("build_concepts")
caption_plural = build_concepts.caption_plural

IRREGULAR = {"mouse": "mice"}


def test_a_plural_that_captions_use_is_taken() -> None:
    counts = Counter({"dogs": 40, "two dog": 9, "dog": 50, "mice": 1})
    assert caption_plural("dog", IRREGULAR, counts) == "dogs"
    assert caption_plural("mouse", IRREGULAR, counts) == "mice"
    assert caption_plural("bench", IRREGULAR, Counter()) == "benches"  # no evidence: the spelling rule


def test_a_word_that_is_already_plural_stays() -> None:
    assert caption_plural("glasses", IRREGULAR, Counter({"glasses": 90})) == "glasses"  # not "glasseses"
    assert caption_plural("swimming trunks", IRREGULAR, Counter()) == "swimming trunks"
    assert caption_plural("bus", IRREGULAR, Counter()) == "buses"  # a singular "s" is no plural


def test_an_invariant_plural_needs_real_evidence_after_numbers() -> None:
    sheep = Counter({"sheep": 100, "two sheep": 6, "herd of sheep": 5})
    assert caption_plural("sheep", IRREGULAR, sheep) == "sheep"
    volleyball = Counter({"volleyball": 470, "two volleyball": 9})  # "two volleyball players": a modifier
    assert caption_plural("volleyball", IRREGULAR, volleyball) == "volleyballs"
