"""The concept boost (:class:`ConceptGuide`): which tokens it favours and by how much, and ``mention``.
Torch-free: the rule is the one search's, the same on both backends."""

from __future__ import annotations

import numpy as np

from imgsum.concepts import FIRST_SLOT
from imgsum.decoding import ConceptGuide

SLOTS = 2  # <c0> <c1> <c0s> <c1s> at FIRST_SLOT ...
EOS = 2
A, RUNS, DOG = range(FIRST_SLOT + 2 * SLOTS, FIRST_SLOT + 2 * SLOTS + 3)  # plain words
VOCAB = DOG + 1


class Concepts:
    """A stepper as far as the guide sees one: two images' concepts (ids, probabilities)."""

    def concepts(self, state):
        return np.array([[3, 9], [4, 0]]), np.array([[0.9, 0.5], [0.6, 0.0]], dtype=np.float32)


def guide(mention: float = 0.0, boost: float = 4.0) -> ConceptGuide:
    g = ConceptGuide(Concepts(), mention=mention, boost=boost)
    g.begin(None, VOCAB)
    return g


def add(g: ConceptGuide, seq: list[int], image: int = 0) -> np.ndarray:
    return g.mask(np.array([seq], dtype=np.int64), np.array([image]), EOS)[0]


def test_the_boost_is_each_concepts_probability_times_the_boost_on_both_its_slot_tokens() -> None:
    np.testing.assert_allclose(add(guide(), [A, RUNS])[FIRST_SLOT : FIRST_SLOT + 2 * SLOTS], [3.6, 2.0, 3.6, 2.0])
    np.testing.assert_allclose(add(guide(), [A], image=1)[FIRST_SLOT : FIRST_SLOT + 2 * SLOTS], [2.4, 0, 2.4, 0])
    other = np.delete(add(guide(), [A, RUNS]), range(FIRST_SLOT, FIRST_SLOT + 2 * SLOTS))
    assert not other.any()  # no other word is touched


def test_mention_keeps_a_caption_from_ending_before_it_says_a_confident_top_concept() -> None:
    g = guide(mention=0.7)
    assert add(g, [A, RUNS])[EOS] == -np.inf  # image 0's top concept has 0.9
    assert add(g, [A, FIRST_SLOT + SLOTS])[EOS] == 0  # said, as its plural
    assert add(g, [A, RUNS], image=1)[EOS] == 0  # image 1's has 0.6: no requirement


def test_boost_after_scales_a_concepts_boost_once_a_caption_has_said_one_at_least_as_probable() -> None:
    g = ConceptGuide(Concepts(), mention=0.0, boost=4.0, after=0.25)
    g.begin(None, VOCAB)
    slots = slice(FIRST_SLOT, FIRST_SLOT + 2 * SLOTS)
    np.testing.assert_allclose(add(g, [A, RUNS])[slots], [3.6, 2.0, 3.6, 2.0])  # nothing said yet: all of it
    np.testing.assert_allclose(add(g, [A, FIRST_SLOT + 1])[slots], [3.6, 0.5, 3.6, 0.5])  # <c1> (0.5) said
    np.testing.assert_allclose(add(g, [FIRST_SLOT + SLOTS, RUNS])[slots], [0.9, 0.5, 0.9, 0.5])  # <c0s> (0.9) said
    rows = g.mask(np.array([[A, RUNS], [A, FIRST_SLOT]]), np.array([0, 1]), EOS)[:, slots]  # per row
    np.testing.assert_allclose(rows, [[3.6, 2.0, 3.6, 2.0], [0.6, 0, 0.6, 0]])
