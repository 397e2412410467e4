"""The consensus (minimum Bayes risk) choice among a beam's finished captions (``consensus``). Torch-free: it is the
one search's, the same on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from imgsum.decoding import DecodingOptions, consensus_choice, overlap, search

EOS = 2
A, DOG, RUNS, ON, GRASS, CAT, SITS, SOFA = 4, 5, 6, 7, 8, 9, 10, 11


def test_overlap_is_one_for_the_same_caption_zero_for_none_in_common_and_symmetric() -> None:
    dog = [A, DOG, RUNS, ON, GRASS]
    assert overlap(dog, dog) == pytest.approx(1.0)
    assert overlap(dog, [CAT, SITS, SOFA]) == 0.0
    other = [A, DOG, SITS, ON, GRASS]
    assert overlap(dog, other) == pytest.approx(overlap(other, dog))
    # 4 of 5 words, 2 of 4 two-word sequences, 0 of 3 three-word ones, 0 of 2 four-word ones
    assert overlap(dog, other) == pytest.approx((0.8 + 0.5 + 0 + 0) / 4)


def test_the_caption_most_like_the_others_wins_over_a_better_ranked_odd_one() -> None:
    odd = [A, CAT, SITS, ON, SOFA]
    alike = [[A, DOG, RUNS, ON, GRASS], [A, DOG, RUNS, GRASS], [A, DOG, SITS, ON, GRASS]]
    ranked = np.array([-0.50, -0.52, -0.53, -0.54])
    assert consensus_choice([odd, *alike], ranked, temperature=1.0) == alike[0]
    # a low temperature puts the weight on the best-ranked caption: the choice becomes the plain one
    assert consensus_choice([odd, *alike], ranked, temperature=1e-3) == odd


def test_captions_never_reached_are_left_out() -> None:
    reached, never = [A, DOG, RUNS], [A, DOG, RUNS, ON, GRASS]
    ranked = np.array([-1.0, -np.inf, -np.inf])
    assert consensus_choice([reached, never, never], ranked, temperature=1.0) == reached


class BigramStepper:
    """A tiny numpy stepper: next-word logits from a fixed table, indexed by the word just said."""

    def __init__(self, vocab: int = 12, seed: int = 0) -> None:
        self.table = np.random.default_rng(seed).normal(0, 2, (vocab, vocab)).astype(np.float32)

    def start(self, grid, pooled):
        rows = len(grid)
        return self.table[np.full(rows, 1)], np.zeros(rows)

    def step(self, tokens, state):
        return self.table[tokens], state

    def reorder(self, state, index):
        return state[index]

    def concepts(self, state):
        return np.zeros((len(state), 0), dtype=np.int64), np.zeros((len(state), 0), dtype=np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_search_with_a_cold_consensus_is_the_plain_search_and_a_warm_one_keeps_captions_whole(seed: int) -> None:
    stepper, grid = BigramStepper(seed=seed), np.zeros((4, 1))
    plain = DecodingOptions(beam=6, max_len=8, length_penalty=1.0)
    banned = [0, 1, 3]
    expected = search(stepper, grid, grid, EOS, plain, banned)
    cold = search(stepper, grid, grid, EOS, plain.with_overrides(consensus=1e-6), banned)
    assert cold == expected
    warm = search(stepper, grid, grid, EOS, plain.with_overrides(consensus=10.0), banned)
    assert all(len(caption) <= 8 and EOS not in caption and not set(banned) & set(caption) for caption in warm)
