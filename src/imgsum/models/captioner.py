"""The captioning model on torch: a frozen encoder, a decoder and the vocabulary, rebuilt from one checkpoint.

It has the interface of :class:`imgsum.runtime.ort.OnnxCaptionModel` (``info``, ``vocab``, ``stepper``,
``encode``, ``encode_wide``, ``describe``, ``generate``), so :class:`imgsum.api.Captioner` runs either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..decoding import Caption, search_captions
from ..model_info import ModelInfo
from ..text import Vocabulary
from .decoders import Decoder, TorchStepper, create_decoder
from .encoders import Encoder, create_encoder


class CaptionModel(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder, info: ModelInfo) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.info = info
        self.vocab = Vocabulary.from_list(info.vocab)
        self.stepper = TorchStepper(decoder)

    @classmethod
    def from_checkpoint(cls, path: str | Path, pretrained_encoder: bool = True) -> "CaptionModel":
        state, info = load_checkpoint(path)
        decoder = create_decoder(info.decoder)
        missing, unexpected = decoder.load_state_dict(state, strict=False)
        tied = {"head.weight"}
        if unexpected or set(missing) - tied:
            raise ValueError(f"{path}: weights do not match the model (missing {missing}, unexpected {unexpected})")
        encoder = create_encoder(info.encoder, pretrained=pretrained_encoder)
        return cls(encoder, decoder, info).eval()

    def generate(self, pixels: np.ndarray | torch.Tensor, **overrides) -> list[Caption]:
        """Preprocessed photos (photos x views, 3, H, W) -> one caption each (``overrides``: as :meth:`describe`)."""
        return self.describe(*self.encode(pixels), **overrides)

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed photos (photos x views, 3, H, W) -> grid (photos, regions, C), pooled (photos, C), as numpy."""
        grid, pooled = self.info.preprocess.per_photo(*self.encoder(torch.as_tensor(pixels)))
        return grid.numpy(), pooled.numpy()

    encode_wide = encode  # torch's threads serve every caller alike

    @torch.inference_mode()
    def describe(self, grid, pooled, **overrides) -> list[Caption]:
        """Encoder features (numpy or torch) -> one caption each; ``overrides`` change the model's own
        :class:`~imgsum.decoding.DecodingOptions` (``beam=5``; None keeps the model's)."""
        return search_captions(self.stepper, grid, pooled, self.vocab, self.info.decoding.with_overrides(**overrides),
                               self.info.concepts)
