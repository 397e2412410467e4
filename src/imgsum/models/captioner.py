"""The captioning model: a frozen encoder, a decoder and the vocabulary, rebuilt from one checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import ModelInfo, load_checkpoint
from ..decoding import decode
from ..text import Vocabulary
from .decoders import Decoder, create_decoder
from .encoders import Encoder, create_encoder


class CaptionModel(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder, info: ModelInfo) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.info = info
        self.vocab = Vocabulary.from_list(info.vocab)

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

    @torch.inference_mode()
    def generate(self, pixels: np.ndarray | torch.Tensor, beam: int | None = None, max_len: int | None = None,
                 length_penalty: float | None = None) -> list[str]:
        """Preprocessed images (batch, 3, H, W) -> one caption each."""
        d = self.info.decoding
        x = torch.as_tensor(pixels)
        grid, pooled = self.encoder(x)  # (batch, regions, C), (batch, C)
        ids = decode(self.decoder, grid, pooled, self.vocab.eos_id,
                     beam=d["beam"] if beam is None else beam,
                     max_len=d["max_len"] if max_len is None else max_len,
                     length_penalty=d["length_penalty"] if length_penalty is None else length_penalty)
        return [self.vocab.decode(row) for row in ids]
