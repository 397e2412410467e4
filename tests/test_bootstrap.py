"""Bootstrap intervals over photos (imgsum.eval.bootstrap) and benchmarks/compare_evals.py on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compare_evals
from imgsum.eval.bootstrap import interval, paired


def test_the_interval_of_a_mean_matches_the_normal_approximation() -> None:
    values = np.random.default_rng(1).normal(0.6, 0.5, size=1000)
    result = interval(values, samples=4000)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # about 0.031
    assert result["mean"] == pytest.approx(values.mean())
    assert result["low"] == pytest.approx(values.mean() - half, abs=0.005)
    assert result["high"] == pytest.approx(values.mean() + half, abs=0.005)
    assert (result["level"], result["samples"], result["photos"]) == (0.95, 4000, 1000)


def test_more_photos_narrow_the_interval_and_a_seed_repeats_it() -> None:
    rng = np.random.default_rng(2)
    small, large = interval(rng.random(100)), interval(rng.random(1600))
    assert (large["high"] - large["low"]) < 0.4 * (small["high"] - small["low"])  # about 1/4: 1/sqrt(16)
    values = rng.random(50)
    assert interval(values, seed=3) == interval(values, seed=3)
    assert interval([0.5] * 20) == {"mean": 0.5, "low": 0.5, "high": 0.5, "level": 0.95, "samples": 2000,
                                    "photos": 20}


def test_a_share_of_yes_or_no_has_the_binomial_interval() -> None:
    named = [1.0] * 423 + [0.0] * 77  # 84.6% of 500
    result = interval(named)
    half = 1.96 * np.sqrt(0.846 * 0.154 / 500)  # about 0.032
    assert result["low"] == pytest.approx(0.846 - half, abs=0.006)
    assert result["high"] == pytest.approx(0.846 + half, abs=0.006)


def test_paired_gains() -> None:
    rng = np.random.default_rng(4)
    before = rng.normal(0.6, 0.5, size=1000)
    same = paired(before, before)
    assert (same["mean"], same["low"], same["high"], same["better"]) == (0.0, 0.0, 0.0, 0.0)
    # A small gain on every photo is certain however noisy the photos are; the same gain as noise on a few is not.
    steady = paired(before, before + 0.01)
    assert steady["mean"] == pytest.approx(0.01) and steady["low"] > 0 and steady["better"] == 1.0
    noisy = before + np.where(rng.random(1000) < 0.5, 0.3, -0.29)
    unsure = paired(before, noisy)
    assert unsure["low"] < 0 < unsure["high"] and 0.1 < unsure["better"] < 0.9


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")]])
def test_bad_values_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        interval(bad)


def test_paired_needs_the_same_photos() -> None:
    with pytest.raises(ValueError, match="same photos"):
        paired([1.0, 2.0], [1.0])


def _run(folder: Path, kind: str, values: dict[str, float], tokenizer: str = "ptb") -> Path:
    folder.mkdir()
    key = "named" if kind == "subjects" else "CIDEr"
    settings = {} if kind == "subjects" else {"tokenizer": tokenizer}
    (folder / "metrics.json").write_text(json.dumps({"kind": kind, "settings": settings}))
    rows = [{"image": k, "caption": "a dog", key: v if kind == "coco" else bool(v)} for k, v in values.items()]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare_evals_pairs_the_photos_both_runs_captioned(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "coco", {f"{i}.jpg": 0.5 for i in range(10)})
    better = _run(tmp_path / "better", "coco", {f"{i}.jpg": 0.7 for i in range(1, 10)})  # one photo unreadable
    table = compare_evals.compare([base, better]).splitlines()
    assert table[0].startswith("| run | photos | CIDEr | 95% interval |")
    assert table[2].split(" | ")[1:4] == ["10", "0.500", "0.500 to 0.500"]
    assert table[3].rstrip(" |").split(" | ")[1:7] == ["9", "0.700", "0.700 to 0.700", "+0.200 (9 photos)",
                                                       "+0.200 to +0.200", "100.0%"]


def test_compare_evals_refuses_runs_on_different_scales(tmp_path: Path) -> None:
    ptb = _run(tmp_path / "ptb", "coco", {"a.jpg": 0.5})
    own = _run(tmp_path / "own", "coco", {"a.jpg": 0.5}, tokenizer="imgsum")
    named = _run(tmp_path / "named", "subjects", {"n01440764_tench.jpg": 1.0})
    for other in (own, named):
        with pytest.raises(SystemExit, match="not comparable"):
            compare_evals.compare([ptb, other])
    assert "| named |" in compare_evals.compare([named, named])
