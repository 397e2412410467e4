"""Could SmolLM2-135M be the caption decoder on this machine (issue 10, item 5)? Its cost as a ClipCap-style
decoder (an image prefix, then the caption), against the shipped ``gpt`` decoder's, in the same run:

- a training step on 16 captions: the language model frozen (gradients reach only the prefix), and fully
  fine-tuned; against the shipped ``gpt``'s training step (``imgsum train``'s, as ``run_all.py`` measures it);
- decoding one photo at beam 5: 12 steps with a KV cache after a 10-token prefix and a 3-token prompt; against
  the shipped ``gpt`` on the torch backend and on ONNX Runtime, beam 5, on the sample photos' features.

    .venv/bin/python benchmarks/lm_decoder_cost.py      # writes results/lm_decoder_cost.md and .json

The language model has SmolLM2-135M's shapes (30 blocks, d 576, 9 heads over 3 key/value heads, feed-forward
1536, 49,152 tokens, tied embeddings) and random weights: the same arithmetic as the real ones, with no weight
file to carry. Its decoding is a lower bound: it leaves out the beam's bookkeeping (top-k, reordering the cache).
Run it on an otherwise idle machine; compare only the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness import optimiser_step, time_each, timed, training_rate
from imgsum.api import Captioner
from imgsum.eval.machine import machine_info, machine_line, utc_now
from run_all import our_train_step

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "src" / "imgsum" / "assets" / "samples"
LAYERS, DIM, HEADS, KV_HEADS, FFN, VOCAB = 30, 576, 9, 3, 1536, 49152
HEAD = DIM // HEADS
PREFIX, PROMPT, STEPS, BEAM, CAPTIONS, TOKENS = 10, 3, 12, 5, 16, 16


class SmolShapedLM(torch.nn.Module):
    """A Llama with SmolLM2-135M's shapes: RMSNorm, grouped-query attention (RoPE left out: it is cheap), SwiGLU."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.blocks = torch.nn.ModuleList(torch.nn.ModuleDict({
            "q": torch.nn.Linear(DIM, DIM, bias=False), "k": torch.nn.Linear(DIM, KV_HEADS * HEAD, bias=False),
            "v": torch.nn.Linear(DIM, KV_HEADS * HEAD, bias=False), "o": torch.nn.Linear(DIM, DIM, bias=False),
            "gate": torch.nn.Linear(DIM, FFN, bias=False), "up": torch.nn.Linear(DIM, FFN, bias=False),
            "down": torch.nn.Linear(FFN, DIM, bias=False),
            "norm1": torch.nn.RMSNorm(DIM), "norm2": torch.nn.RMSNorm(DIM)}) for _ in range(LAYERS))
        self.norm = torch.nn.RMSNorm(DIM)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """Embedded inputs (batch, T, DIM) -> logits (batch, T, VOCAB); ``cache`` (decoding) grows by T."""
        b, t, _ = x.shape
        for i, blk in enumerate(self.blocks):
            h = blk["norm1"](x)
            q = blk["q"](h).view(b, t, HEADS, HEAD).transpose(1, 2)
            k = blk["k"](h).view(b, t, KV_HEADS, HEAD).transpose(1, 2)
            v = blk["v"](h).view(b, t, KV_HEADS, HEAD).transpose(1, 2)
            if cache is not None:
                if i in cache:
                    k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
                cache[i] = (k, v)
            rep = HEADS // KV_HEADS
            y = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                               is_causal=cache is None)
            x = x + blk["o"](y.transpose(1, 2).reshape(b, t, DIM))
            h = blk["norm2"](x)
            x = x + blk["down"](F.silu(blk["gate"](h)) * blk["up"](h))
        return self.norm(x) @ self.embed.weight.T


def lm_train_step(lm: SmolShapedLM, fine_tune: bool, seed: int = 0):
    """A ClipCap step: a trainable prefix (what an image projection would give), then 16 captions of 16 tokens."""
    g = torch.Generator().manual_seed(seed)
    lm.requires_grad_(fine_tune)
    prefix = torch.nn.Parameter(torch.randn(CAPTIONS, PREFIX, DIM, generator=g) * 0.02)
    params = [prefix, *lm.parameters()] if fine_tune else [prefix]
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens = torch.randint(0, VOCAB, (CAPTIONS, TOKENS), generator=g)

    def loss() -> torch.Tensor:
        logits = lm(torch.cat([prefix, lm.embed(tokens)], 1))[:, PREFIX - 1 : -1]  # each position predicts the next
        return F.cross_entropy(logits.reshape(-1, VOCAB), tokens.reshape(-1))

    return optimiser_step(opt, loss)


@torch.no_grad()
def lm_decode_seconds(lm: SmolShapedLM, repeats: int = 5) -> float:
    """Seconds to decode one photo: the prefix and prompt at once, then ``STEPS`` steps of ``BEAM`` rows."""
    lm.requires_grad_(False)

    def decode() -> None:
        cache: dict = {}
        lm(torch.randn(BEAM, PREFIX + PROMPT, DIM), cache)
        tokens = torch.zeros(BEAM, 1, dtype=torch.long)
        for _ in range(STEPS):
            tokens = lm(lm.embed(tokens), cache)[:, -1].argmax(-1, keepdim=True)

    decode()
    seconds, _ = timed(lambda: [decode() for _ in range(repeats)])
    return seconds / repeats


def gpt_decode_seconds(captioner: Captioner, repeats: int = 5) -> float:
    """Mean seconds per photo of the shipped ``gpt``'s beam-5 search on the sample photos' features (encoder
    apart), after one untimed pass over them."""
    model = captioner.model
    pixels = np.concatenate([captioner.preprocess.load(path) for path in sorted(SAMPLES.glob("*.jpg"))])
    grid, pooled = model.encode(pixels)
    rows = [(grid[i : i + 1], pooled[i : i + 1]) for i in range(len(pixels))]
    seconds, _ = time_each(lambda row: model.describe(*row, beam=BEAM), rows * repeats, warmup=len(rows))
    return statistics.fmean(seconds)


def run() -> dict:
    torch.manual_seed(0)
    lm = SmolShapedLM()
    gpt_torch = Captioner.load("gpt", backend="torch")
    gpt_step, words = our_train_step(gpt_torch.model.info.decoder, images=CAPTIONS, per_image=1, words=TOKENS)
    train = {"gpt": training_rate(gpt_step, CAPTIONS, steps=5),
             "lm_frozen": training_rate(lm_train_step(lm, fine_tune=False), CAPTIONS, steps=3),
             "lm_fine_tuned": training_rate(lm_train_step(lm, fine_tune=True), CAPTIONS, steps=3)}
    decode = {"lm_torch": lm_decode_seconds(lm), "gpt_torch": gpt_decode_seconds(gpt_torch),
              "gpt_onnx": gpt_decode_seconds(Captioner.load("gpt", backend="onnx"))}
    return {"date": utc_now(), "machine": machine_info(), "threads": torch.get_num_threads(), "train": train,
            "decode_seconds": decode, "gpt_train_words": words,
            "lm_parameters": sum(p.numel() for p in lm.parameters())}


def table(r: dict) -> str:
    t, d = r["train"], r["decode_seconds"]
    gpt = t["gpt"]["captions_per_second"]
    flickr = 30000  # Flickr8k's training captions: one epoch
    lines = [f"# SmolLM2-135M as the caption decoder: what it costs here ({r['date'][:10]})", "",
             machine_line(r["machine"]) + f"; torch, {r['threads']} threads; `python benchmarks/lm_decoder_cost.py`.",
             "", "| training, 16 captions a step | captions/s | x the shipped gpt | one Flickr8k epoch (30,000 captions) |",
             "| --- | --- | --- | --- |"]
    for key, label in (("gpt", "shipped `gpt` (3 blocks, d 256)"), ("lm_frozen", "SmolLM2-135M frozen, prefix trained"),
                       ("lm_fine_tuned", "SmolLM2-135M fine-tuned")):
        rate = t[key]["captions_per_second"]
        lines.append(f"| {label} | {rate:.1f} | {rate / gpt:.3f} | {flickr / rate / 60:.0f} min |")
    lines += ["", "| decoding one photo, beam 5 | ms | x the shipped gpt on torch |", "| --- | --- | --- |"]
    for key, label in (("gpt_onnx", "shipped `gpt`, ONNX Runtime"), ("gpt_torch", "shipped `gpt`, torch"),
                       ("lm_torch", f"SmolLM2-135M, torch, {STEPS} steps, KV cache (a lower bound)")):
        lines.append(f"| {label} | {1000 * d[key]:.0f} | {d[key] / d['gpt_torch']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lm_decoder_cost.md")
    args = ap.parse_args()
    result = run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
