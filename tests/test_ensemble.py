"""Ensembles: the mixing stepper (torch-free), the manifest ``imgsum ensemble`` writes, and loading one.

Both backends caption an ensemble alike: ``tests/test_onnx.py::test_an_ensemble_captions_alike_on_both_backends``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imgsum.cli import main
from imgsum.decoding import DecodingOptions, Ensemble, _log_softmax, search
from imgsum.ensemble import is_ensemble, read_ensemble

VOCAB, EOS = 12, 2


class TableStepper:
    """A stepper whose next-word logits depend on the last word alone (a random table); each image's concept ids
    are ``concepts``."""

    def __init__(self, seed: int, concepts=((3, 5), (4, 0))) -> None:
        self.table = np.random.default_rng(seed).normal(size=(VOCAB, VOCAB)).astype(np.float32) * 3
        self.ids = np.array(concepts)

    def start(self, grid, pooled):
        rows = np.arange(len(grid))
        return np.repeat(self.table[:1], len(rows), 0), rows

    def step(self, tokens, rows):
        return self.table[tokens], rows

    def reorder(self, rows, index):
        return rows[index]

    def concepts(self, rows):
        return self.ids[rows], np.full(self.ids[rows].shape, 0.5, dtype=np.float32)


GRID = np.zeros((2, 4, 3), dtype=np.float32)


def test_an_ensemble_mixes_its_members_log_probabilities_by_weight():
    a, b = TableStepper(0), TableStepper(1)
    ensemble = Ensemble([a, b], [3, 1])
    logits, state = ensemble.start(GRID, None)
    np.testing.assert_allclose(logits, 0.75 * _log_softmax(a.table[[0, 0]]) + 0.25 * _log_softmax(b.table[[0, 0]]),
                               rtol=1e-6)
    logits, state = ensemble.step(np.array([5, 7]), ensemble.reorder(state, np.array([1, 0])))
    np.testing.assert_allclose(logits, 0.75 * _log_softmax(a.table[[5, 7]]) + 0.25 * _log_softmax(b.table[[5, 7]]),
                               rtol=1e-6)
    np.testing.assert_array_equal(ensemble.concepts(state)[0], [[4, 0], [3, 5]])  # reordered with the rows


@pytest.mark.parametrize("beam", [1, 3])
def test_an_ensemble_weighing_one_member_alone_searches_as_that_member(beam):
    a, b = TableStepper(0), TableStepper(1)
    options = DecodingOptions(beam=beam, max_len=8)
    alone = search(a, GRID, None, EOS, options)
    assert search(Ensemble([a, b], [1, 0]), GRID, None, EOS, options) == alone
    assert search(Ensemble([b, a], [0, 2]), GRID, None, EOS, options) == alone
    assert search(Ensemble([a, b], [1, 1]), GRID, None, EOS, options) != alone  # the other one counts


def test_members_that_see_other_concepts_or_weights_that_are_not_one_each_are_refused():
    with pytest.raises(ValueError, match="different visual concepts"):
        Ensemble([TableStepper(0), TableStepper(1, concepts=((3, 5), (4, 1)))], [1, 1]).start(GRID, None)
    for weights in ([1], [1, -1], [0, 0]):
        with pytest.raises(ValueError, match="one non-negative weight per member"):
            Ensemble([TableStepper(0), TableStepper(1)], weights)


def test_imgsum_ensemble_writes_a_manifest_that_loads_and_captions(tiny_checkpoints, sample_photos, tmp_path, capsys):
    from imgsum.api import Captioner

    gpt, lstm = tiny_checkpoints["gpt"], tiny_checkpoints["lstm"]
    out = tmp_path / "models"
    assert main(["ensemble", str(gpt), str(lstm), "--weights", "3", "1", "--out", str(out), "--name", "duo",
                 "--beam", "3"]) == 0
    manifest = out / "duo.json"
    assert is_ensemble(manifest) and not is_ensemble(gpt)
    spec = read_ensemble(manifest)
    assert spec.weights == [0.75, 0.25] and spec.decoding.beam == 3
    assert [(spec.folder / m).resolve() for m in spec.members] == [gpt.with_suffix(""), lstm.with_suffix("")]
    assert not Path(spec.members[0]).is_absolute()  # relative to the manifest: the folder can move with its members

    duo = Captioner.load(manifest, backend="torch")
    assert duo.info.decoder.kind == "gpt+lstm" and duo.info.decoding.beam == 3
    results = duo.caption_batch([*sample_photos[:2], tmp_path / "missing.jpg"])
    assert [r.ok for r in results] == [True, True, False] and all(r.caption for r in results[:2])
    alone = Captioner.load(gpt, backend="torch").describe(sample_photos[0]).concepts
    assert [c.word for c in results[0].concepts] == [c.word for c in alone]  # the first member's concepts

    capsys.readouterr()
    assert main(["models", "--json", str(manifest)]) == 0
    row = [r for r in json.loads(capsys.readouterr().out) if r["model"] == str(manifest)][0]
    assert row["decoder"] == "gpt+lstm" and row["backends"] == ["torch"] and len(row["members"]) == 2


def test_an_ensemble_weighing_one_member_alone_captions_as_that_member(tiny_checkpoints, sample_photos, tmp_path):
    from imgsum.api import Captioner

    gpt, lstm = tiny_checkpoints["gpt"], tiny_checkpoints["lstm"]
    assert main(["ensemble", str(gpt), str(lstm), "--weights", "1", "0", "--out", str(tmp_path)]) == 0
    alone = Captioner.load(gpt, backend="torch").caption_batch(sample_photos)
    together = Captioner.load(tmp_path / "ensemble.json", backend="torch").caption_batch(sample_photos)
    assert [r.caption for r in together] == [r.caption for r in alone]


def test_members_that_cannot_caption_as_one_are_refused_with_the_reason(tiny_checkpoints, sample_photos, tmp_path,
                                                                        caplog):
    from imgsum.checkpoint import load_checkpoint, save_checkpoint

    state, info = load_checkpoint(tiny_checkpoints["lstm"])
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, state, replace(info, vocab=[*info.vocab[:-1], "zebra"]))
    assert main(["ensemble", str(tiny_checkpoints["gpt"]), str(other), "--out", str(tmp_path)]) == 2
    assert "another vocab" in caplog.text and not (tmp_path / "ensemble.json").exists()
    assert main(["ensemble", str(tiny_checkpoints["gpt"]), str(tiny_checkpoints["lstm"]), "--weights", "1",
                 "--out", str(tmp_path)]) == 2
    assert "1 weight(s) for 2 member(s)" in caplog.text

    assert main(["ensemble", str(tiny_checkpoints["gpt"]), str(tiny_checkpoints["lstm"]), "--out", str(tmp_path)]) == 0
    # The members have no ONNX form, the default backend's:
    assert main(["caption", "--model", str(tmp_path / "ensemble.json"), str(sample_photos[0])]) == 2
    assert "has no onnx form" in caplog.text


def test_members_may_differ_in_concept_crop_and_the_ensemble_reads_as_its_first(tiny_checkpoints, sample_photos,
                                                                                 tmp_path, caplog):
    """The shipped `lstm` reads the whole photo (fast); the ensemble it joins reads as the `gpt` before it does."""
    from imgsum.api import Captioner
    from imgsum.checkpoint import load_checkpoint, save_checkpoint

    state, info = load_checkpoint(tiny_checkpoints["lstm"])
    whole = tmp_path / "whole.safetensors"
    save_checkpoint(whole, state, replace(info, preprocess=replace(info.preprocess, concept_crop=False)))
    assert main(["ensemble", str(tiny_checkpoints["gpt"]), str(whole), "--weights", "1", "0", "--out",
                 str(tmp_path)]) == 0
    together = Captioner.load(tmp_path / "ensemble.json", backend="torch")
    assert together.preprocess.concept_crop
    alone = Captioner.load(tiny_checkpoints["gpt"], backend="torch")
    photo = sample_photos[1]  # chelsea.jpg, 451 x 300: its centre square is not the whole photo
    assert together.describe(photo).concepts == alone.describe(photo).concepts
    smaller = tmp_path / "smaller.safetensors"
    save_checkpoint(smaller, state, replace(info, preprocess=replace(info.preprocess, size=192)))
    assert main(["ensemble", str(tiny_checkpoints["gpt"]), str(smaller), "--out", str(tmp_path / "no")]) == 2
    assert "another preprocess" in caplog.text
