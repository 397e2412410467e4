"""The specification's design, written the way its code ran, as the baseline that our figures are ratios to.

This is deliberately not the library's way: it keeps the habits of the seed's own code that the
library does not repeat (one image at a time, the whole prefix re-fed at every step, no key/value cache):

* encoder: ResNet-50 (random weights: the same compute as ImageNet ones) with its ``fc`` replaced by
  a linear layer to 512; one image at a time;
* LSTM decoder: 1 layer, hidden 1024, embedding 512, vocabulary 7,500. At every step it is re-fed
  the image and the whole prefix while also carrying its state from the previous step;
* GPT decoder: 6 causal transformer layers, d 512, 8 heads, feed-forward 1024, re-run on the whole
  prefix (image first) at every step, with no key/value cache;
* greedy decoding. With random weights it would rarely emit ``<eos>``, so it runs a fixed number of
  steps, which the benchmark sets to our model's mean caption length (words + ``<eos>``).

Also runnable on its own, for the cold-start measurement::

    python benchmarks/baseline.py IMAGE --decoder gpt --weights spec-gpt.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import optimiser_step

VOCAB = 7500
EMBED = 512
BOS, EOS = 1, 2
MAX_POSITIONS = 40


class SpecEncoder(nn.Module):
    """ResNet-50 with ``fc`` = Linear(2048, 512): image (1, 3, 224, 224) -> embedding (1, 512)."""

    def __init__(self) -> None:
        super().__init__()
        from imgsum.models.encoders import create_encoder

        encoder = create_encoder("resnet50", pretrained=False)
        self.preprocess = encoder.preprocess  # ImageNet mean/std, 224 x 224
        self.cnn = encoder.trunk
        self.cnn.fc = nn.Linear(2048, EMBED)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.cnn(images)  # (batch, 512)


class SpecLSTM(nn.Module):
    def __init__(self, vocab: int = VOCAB, embed: int = EMBED, hidden: int = 1024) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing, as trained: [image, <bos>, words...] -> logits (batch, 2 + T, vocab)."""
        x = torch.cat([image[:, None], self.embed(tokens)], 1)
        return self.fc(self.lstm(x)[0])

    @torch.no_grad()
    def greedy(self, image: torch.Tensor, steps: int) -> list[int]:
        """The specification's loop: the image and the whole prefix again at every step, state carried too."""
        words = [BOS]
        state = None
        for _ in range(steps):
            x = torch.cat([image[:, None], self.embed(torch.tensor([words]))], 1)  # (1, 1 + t, 512)
            out, state = self.lstm(x, state)
            words.append(int(self.fc(out[:, -1]).argmax(-1)))
        return words[1:]


class SpecGPT(nn.Module):
    def __init__(self, vocab: int = VOCAB, d: int = EMBED, layers: int = 6, heads: int = 8, ff: int = 1024) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(MAX_POSITIONS, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.1, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(d, vocab)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """[image, <bos>, words...] -> logits at every position (batch, 1 + T, vocab), causally masked."""
        x = torch.cat([image[:, None], self.embed(tokens)], 1)
        t = x.shape[1]
        x = x + self.pos.weight[:t]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.fc(self.blocks(x, mask=mask, is_causal=True))

    @torch.no_grad()
    def greedy(self, image: torch.Tensor, steps: int) -> list[int]:
        """The whole prefix through all layers at every step; no cache."""
        words = [BOS]
        for _ in range(steps):
            logits = self(image, torch.tensor([words]))  # (1, 1 + t, vocab)
            words.append(int(logits[0, -1].argmax()))
        return words[1:]


DECODERS = {"lstm": SpecLSTM, "gpt": SpecGPT}


class SpecCaptioner:
    """The specification's pipeline: load an image, preprocess, encode, decode greedily; one image at a time."""

    def __init__(self, decoder: str, steps: int = 12, weights: str | Path | None = None) -> None:
        self.encoder = SpecEncoder().eval()
        self.decoder = DECODERS[decoder]().eval()
        self.kind = decoder
        self.steps = steps
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.encoder.load_state_dict(state["encoder"])
            self.decoder.load_state_dict(state["decoder"])

    def save(self, path: str | Path) -> None:
        torch.save({"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict()}, path)

    def pixels(self, path: str | Path) -> torch.Tensor:
        from PIL import Image

        p = self.encoder.preprocess
        with Image.open(path) as im:
            im = im.convert("RGB").resize((p.size, p.size), Image.BILINEAR)
        x = (np.asarray(im, np.float32) - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
        return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]  # (1, 3, 224, 224)

    @torch.no_grad()
    def caption(self, path: str | Path) -> str:
        ids = self.decoder.greedy(self.encoder(self.pixels(path)), self.steps)
        return " ".join(f"w{i}" for i in ids)

    def caption_each(self, paths) -> list[str]:
        return [self.caption(p) for p in paths]


def train_step_fn(decoder: str, batch: int, words: int, seed: int = 0):
    """One optimisation step of the specification's decoder (and its encoder's fc) on ResNet-50 pooled features.

    Returns ``step()``; each call trains on ``batch`` (image, caption) rows of ``words`` words.
    """
    g = torch.Generator().manual_seed(seed)
    fc = nn.Linear(2048, EMBED)
    model = DECODERS[decoder]().train()
    params = [*fc.parameters(), *model.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    pooled = torch.randn(batch, 2048, generator=g)  # (captions, 2048): one row per (image, caption) pair
    tokens = torch.randint(3, VOCAB, (batch, words + 1), generator=g)
    tokens[:, 0] = BOS
    targets = torch.cat([tokens[:, 1:], torch.full((batch, 1), EOS)], 1)  # (captions, words + 1)

    def loss() -> torch.Tensor:
        logits = model(fc(pooled), tokens)[:, 1:]  # the image position predicts nothing
        return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))

    return optimiser_step(opt, loss)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Caption one image with the specification's design (random weights).")
    p.add_argument("image")
    p.add_argument("--decoder", choices=sorted(DECODERS), default="gpt")
    p.add_argument("--weights", help="a file written by SpecCaptioner.save (as its code loaded a checkpoint)")
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args(argv)
    start = time.perf_counter()
    captioner = SpecCaptioner(args.decoder, args.steps, args.weights)
    print(f"{args.image}\t{captioner.caption(args.image)}", flush=True)
    print(f"seconds {time.perf_counter() - start:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
