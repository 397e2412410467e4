"""The beam search's top-k selection (``decoding._topk``), against a full sort. Torch-free."""

from __future__ import annotations

import numpy as np
import pytest

from imgsum.decoding import _topk


def _reference(x: np.ndarray, k: int) -> np.ndarray:
    return -np.sort(-x, axis=-1, kind="stable")[:, :k]


@pytest.mark.parametrize("rows, n, k", [(16, 22_500, 3), (5, 60_000, 8), (3, 7_501, 5), (2, 1_000, 8), (4, 37, 3),
                                        (2, 6, 6)])
def test_topk_gives_the_largest_values_best_first_and_their_indices(rows: int, n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((rows, n)).astype(np.float32)
    x[:, ::7] = -np.inf  # banned words
    x[:, 1::97] = x[:, 1:2]  # ties
    values, index = _topk(x, k)
    assert values.shape == index.shape == (rows, k)
    np.testing.assert_array_equal(values, _reference(x, k))
    np.testing.assert_array_equal(np.take_along_axis(x, index, -1), values)
    assert all(len(set(row)) == k for row in index.tolist()) and (index < n).all()


def test_topk_with_few_finite_values_fills_with_minus_infinity() -> None:
    x = np.full((2, 10_000), -np.inf, dtype=np.float32)
    x[0, 17], x[1, 9_999] = 0.0, -1.0  # a finished beam: one way on
    values, index = _topk(x, 3)
    assert index[:, 0].tolist() == [17, 9_999] and values[:, 0].tolist() == [0.0, -1.0]
    assert np.isneginf(values[:, 1:]).all() and all(len(set(row)) == 3 for row in index.tolist())
    assert (index < x.shape[1]).all()  # never an index past the row (the blocks' padding)
