"""One checkpoint file rebuilds the model exactly, without unpickling code."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from safetensors import safe_open  # noqa: E402

from imgsum.checkpoint import load_checkpoint  # noqa: E402
from imgsum.model_info import FORMAT_VERSION, read_checkpoint_info  # noqa: E402
from imgsum.models.captioner import CaptionModel  # noqa: E402

from conftest import make_checkpoint, tiny_decoder  # noqa: E402


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_round_trip_rebuilds_the_same_decoder(tmp_path, kind):
    path = make_checkpoint(tmp_path / "m.safetensors", kind, seed=3)
    state, info = load_checkpoint(path)
    assert info.format_version == FORMAT_VERSION and info.decoder.kind == kind and info.encoder == "efficientnet_lite0"
    assert info.preprocess.size == 224 and info.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    original, _ = tiny_decoder(kind, seed=3)
    rebuilt = CaptionModel.from_checkpoint(path).decoder
    for name, tensor in original.state_dict().items():  # floats stored in fp16
        want = tensor.half().float() if tensor.is_floating_point() else tensor
        torch.testing.assert_close(rebuilt.state_dict()[name], want)


def test_metadata_is_plain_json(tmp_path):
    path = make_checkpoint(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["imgsum"])
    assert set(meta) >= {"format_version", "encoder", "preprocess", "decoder", "vocab", "decoding", "training", "metrics"}


def test_not_a_checkpoint_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not an imgsum checkpoint"):
        read_checkpoint_info(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.safetensors")
