"""The concept boost (:class:`ConceptGuide`): which tokens it favours, and that ``boost_until_named`` stops it
once a caption has said one of the image's concepts. Torch-free: the rule is the one search's."""

from __future__ import annotations

import numpy as np

from imgsum.concepts import FIRST_SLOT
from imgsum.decoding import ConceptGuide

SLOTS = 2  # <c0> <c1> <c0s> <c1s> at FIRST_SLOT ...
EOS = 2
A, RUNS, DOG, TENNIS, BALL = range(FIRST_SLOT + 2 * SLOTS, FIRST_SLOT + 2 * SLOTS + 5)  # plain words
VOCAB = BALL + 1
SAYS = {FIRST_SLOT: [DOG], FIRST_SLOT + 1: [TENNIS, BALL], FIRST_SLOT + 2: [-5], FIRST_SLOT + 3: [-6]}


class Concepts:
    """A stepper as far as the guide sees one: two images' concepts (ids, probabilities)."""

    def concepts(self, state):
        return np.array([[3, 9], [4, 0]]), np.array([[0.9, 0.5], [0.8, 0.0]], dtype=np.float32)


def guide(until_named: bool) -> ConceptGuide:
    g = ConceptGuide(Concepts(), mention=0.0, boost=4.0, until_named=until_named, aliases=lambda state: [SAYS, {}])
    g.begin(None, VOCAB)
    return g


def slot_bonus(g: ConceptGuide, seq: list[int], image: int = 0) -> np.ndarray:
    return g.mask(np.array([seq], dtype=np.int64), np.array([image]), EOS)[0, FIRST_SLOT : FIRST_SLOT + 2 * SLOTS]


def test_the_boost_is_each_concepts_probability_times_the_boost_on_both_its_slot_tokens() -> None:
    np.testing.assert_allclose(slot_bonus(guide(False), [A, RUNS]), [3.6, 2.0, 3.6, 2.0])
    np.testing.assert_allclose(slot_bonus(guide(True), [A, RUNS]), [3.6, 2.0, 3.6, 2.0])  # nothing named yet


def test_until_named_the_boost_stops_once_a_concept_is_said_as_a_slot_or_as_its_word() -> None:
    g = guide(True)
    assert not slot_bonus(g, [A, FIRST_SLOT + 1]).any()  # "a tennis ball": named through the slot token
    assert not slot_bonus(g, [A, DOG, RUNS]).any()  # "a dog runs": the one-word concept said as a plain word
    assert slot_bonus(g, [A, TENNIS]).any()  # half of a two-word concept is not the concept
    assert slot_bonus(guide(False), [A, DOG, RUNS]).any()  # without the option the boost goes on


def test_an_image_is_judged_by_its_own_concepts() -> None:
    g = guide(True)
    assert slot_bonus(g, [A, DOG], image=1)[0] > 0  # "dog" is image 0's concept, not image 1's
