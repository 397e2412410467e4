"""Caption decoders, in a registry: ``lstm`` and ``gpt``.

Both start from the image embedding as their first token and attend over the encoder's grid.
Every decoder has one step interface, used by all decoding (see :mod:`imgsum.decoding`):

* ``start(grid, pooled) -> (logits, state)``: feeds the image token; logits for the first word.
* ``step(tokens, state) -> (logits, state)``: feeds one word per sequence; carries the LSTM's
  state or the transformer's key/value cache, never re-feeding the prefix.
* ``forward(grid, pooled, tokens)``: the same computation, teacher-forced over whole captions.
* ``traceable_step(tokens, state)``: ``step`` as ``torch.onnx`` can trace it (:mod:`imgsum.export`).

A state is a dict of tensors whose first dimension is the batch, so search can reorder it.
:class:`TorchStepper` gives search its numpy view of a decoder.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model_info import DecoderConfig

State = dict[str, torch.Tensor]


class Decoder(nn.Module):
    config: DecoderConfig

    def start(self, grid: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def traceable_step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``step`` reading no tensor into Python, so that export can trace it; ``step`` itself by default."""
        return self.step(tokens, state)

    def forward(self, grid: torch.Tensor, pooled: torch.Tensor, tokens: torch.Tensor,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (captions, 1 + T, vocab): after the image token, then after each of ``tokens`` (captions, T).

        ``image_index`` (captions,) maps each caption to its row of ``grid``/``pooled`` (one image, many captions).
        """
        raise NotImplementedError


def reorder_state(state: State, index: torch.Tensor) -> State:
    """Selects (and repeats) batch rows of every state tensor."""
    return {k: v.index_select(0, index) for k, v in state.items()}


class TorchStepper:
    """The step interface of :mod:`imgsum.decoding` over a torch ``Decoder``: state stays on the decoder's
    device, logits come back as numpy."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.device = next(decoder.parameters()).device

    @torch.no_grad()
    def start(self, grid, pooled) -> tuple[np.ndarray, State]:
        logits, state = self.decoder.start(torch.as_tensor(grid, device=self.device),
                                           torch.as_tensor(pooled, device=self.device))
        return logits.float().cpu().numpy(), state

    @torch.no_grad()
    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        logits, state = self.decoder.step(torch.from_numpy(tokens).to(self.device), state)
        return logits.float().cpu().numpy(), state

    def reorder(self, state: State, index: np.ndarray) -> State:
        return reorder_state(state, torch.from_numpy(index).to(self.device))


_DECODERS: dict[str, Callable[[DecoderConfig], Decoder]] = {}


def register_decoder(name: str):
    def wrap(cls):
        _DECODERS[name] = cls
        return cls

    return wrap


def list_decoders() -> list[str]:
    return sorted(_DECODERS)


def create_decoder(config: DecoderConfig) -> Decoder:
    if config.kind not in _DECODERS:
        raise ValueError(f"unknown decoder {config.kind!r}; choose from {', '.join(list_decoders())}")
    return _DECODERS[config.kind](config)


def _select(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return x if index is None else x.index_select(0, index)


@register_decoder("lstm")
class LSTMDecoder(Decoder):
    """Show, attend and tell, with the image embedding as the first input token.

    Each step's input is the previous word's embedding and a gated attention context over the grid;
    the output layer shares its weights with the word embedding.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.image_token = nn.Linear(c.feature_dim, c.dim)
        self.init_h = nn.Linear(c.feature_dim, c.hidden)
        self.init_c = nn.Linear(c.feature_dim, c.hidden)
        self.values = nn.Linear(c.feature_dim, c.dim)
        self.keys = nn.Linear(c.dim, c.attention_dim)
        self.query = nn.Linear(c.hidden, c.attention_dim)
        self.score = nn.Linear(c.attention_dim, 1)
        self.gate = nn.Linear(c.hidden, c.dim)
        self.cell = nn.LSTMCell(2 * c.dim, c.hidden)
        self.out = nn.Linear(c.hidden, c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size)
        self.head.weight = self.embed.weight
        self.drop = nn.Dropout(c.dropout)
        nn.init.normal_(self.embed.weight, std=0.02)  # tied with the output layer: start with small logits

    def _memory(self, grid: torch.Tensor, pooled: torch.Tensor, index: torch.Tensor | None) -> State:
        values = self.values(grid)  # (images, regions, dim)
        keys = self.keys(values)  # (images, regions, attention)
        pooled = _select(pooled, index)
        return {
            "values": _select(values, index),
            "keys": _select(keys, index),
            "h": torch.tanh(self.init_h(pooled)),  # (batch, hidden)
            "c": torch.tanh(self.init_c(pooled)),
        }

    def _advance(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state["h"], state["c"]
        energy = self.score(torch.tanh(state["keys"] + self.query(h)[:, None]))  # (batch, regions, 1)
        alpha = energy.softmax(1)
        context = (alpha * state["values"]).sum(1) * torch.sigmoid(self.gate(h))  # (batch, dim)
        h, c = self.cell(torch.cat([self.drop(x), context], 1), (h, c))
        logits = self.head(self.drop(self.out(self.drop(h)) + context))  # (batch, vocab)
        return logits, {**state, "h": h, "c": c}

    def start(self, grid, pooled):
        state = self._memory(grid, pooled, None)
        return self._advance(self.image_token(pooled), state)

    def step(self, tokens, state):
        return self._advance(self.embed(tokens), state)

    def forward(self, grid, pooled, tokens, image_index=None):
        state = self._memory(grid, pooled, image_index)
        inputs = torch.cat([self.image_token(_select(pooled, image_index))[:, None], self.embed(tokens)], 1)
        outputs = []
        for t in range(inputs.shape[1]):  # (batch, 1 + T, dim), one step at a time
            logits, state = self._advance(inputs[:, t], state)
            outputs.append(logits)
        return torch.stack(outputs, 1)  # (batch, 1 + T, vocab)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention (cached), cross-attention to the grid, MLP."""

    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.cross_q = nn.Linear(c.dim, c.dim)
        self.cross_kv = nn.Linear(c.dim, 2 * c.dim)
        self.cross_proj = nn.Linear(c.dim, c.dim)
        self.mlp = nn.Sequential(nn.Linear(c.dim, c.mlp_ratio * c.dim), nn.GELU(), nn.Linear(c.mlp_ratio * c.dim, c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.p = c.dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (batch, heads, T, head_dim)

    def memory(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.cross_kv(mem).chunk(2, -1)
        return self._split(k), self._split(v)  # (images, heads, regions, head_dim)

    def forward(self, x: torch.Tensor, cross: tuple[torch.Tensor, torch.Tensor],
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (batch, T, dim); ``past`` the cached keys and values of earlier positions."""
        b, t, d = x.shape
        p = self.p if self.training else 0.0
        q, k, v = (self._split(z) for z in self.qkv(self.ln1(x)).chunk(3, -1))
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        # With a cache, the new positions see every cached one; otherwise causal within x.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=past is None and t > 1)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
        y = F.scaled_dot_product_attention(self._split(self.cross_q(self.ln2(x))), *cross, dropout_p=p)
        x = x + self.drop(self.cross_proj(y.transpose(1, 2).reshape(b, t, d)))
        x = x + self.drop(self.mlp(self.ln3(x)))
        return x, (k, v)


@register_decoder("gpt")
class GPTDecoder(Decoder):
    """A stack of causal transformer blocks; the image embedding is position 0, the grid is cross-attended."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.pos = nn.Embedding(c.max_len, c.dim)
        self.image_token = nn.Linear(c.feature_dim, c.dim)
        self.memory = nn.Sequential(nn.Linear(c.feature_dim, c.dim), nn.LayerNorm(c.dim))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self.drop = nn.Dropout(c.dropout)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def _cross(self, grid: torch.Tensor, index: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        mem = self.memory(grid)  # (images, regions, dim)
        return [tuple(_select(z, index) for z in blk.memory(mem)) for blk in self.blocks]  # type: ignore[misc]

    def _run(self, x: torch.Tensor, cross, past=None):
        """x (batch, T, dim): the inputs with their position embeddings added."""
        x = self.drop(x)
        caches = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, cross[i], None if past is None else past[i])
            caches.append(kv)
        return self.head(self.ln(x)), caches  # (batch, T, vocab)

    @staticmethod
    def _pack(cross, caches, position: torch.Tensor) -> State:
        state: State = {"position": position}
        for i, ((ck, cv), (k, v)) in enumerate(zip(cross, caches)):
            state.update({f"ck{i}": ck, f"cv{i}": cv, f"k{i}": k, f"v{i}": v})
        return state

    def _unpack(self, state: State):
        n = len(self.blocks)
        cross = [(state[f"ck{i}"], state[f"cv{i}"]) for i in range(n)]
        past = [(state[f"k{i}"], state[f"v{i}"]) for i in range(n)]
        return cross, past

    def start(self, grid, pooled):
        cross = self._cross(grid, None)
        logits, caches = self._run(self.image_token(pooled)[:, None] + self.pos.weight[:1], cross)
        position = torch.ones(pooled.shape[0], dtype=torch.long, device=pooled.device)
        return logits[:, -1], self._pack(cross, caches, position)

    def step(self, tokens, state):
        if int(state["position"][0]) >= self.config.max_len:
            raise ValueError(f"caption longer than the model's {self.config.max_len} positions")
        return self.traceable_step(tokens, state)

    def traceable_step(self, tokens, state):
        """``step`` without its range check: the position stays a tensor (batch,), for export to trace."""
        cross, past = self._unpack(state)
        x = self.embed(tokens)[:, None] + self.pos(state["position"])[:, None]  # (batch, 1, dim)
        logits, caches = self._run(x, cross, past)
        return logits[:, -1], self._pack(cross, caches, state["position"] + 1)

    def forward(self, grid, pooled, tokens, image_index=None):
        cross = self._cross(grid, image_index)
        x = torch.cat([self.image_token(_select(pooled, image_index))[:, None], self.embed(tokens)], 1)
        return self._run(x + self.pos.weight[: x.shape[1]], cross)[0]  # (batch, 1 + T, vocab)
