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
from .concept_layers import ConceptMemory, SlotWords

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
                image_index: torch.Tensor | None = None, concepts: tuple[torch.Tensor, torch.Tensor] | None = None,
                has_image: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (captions, 1 + T, vocab): after the image token, then after each of ``tokens`` (captions, T).

        ``image_index`` (captions,) maps each caption to its row of ``grid``/``pooled`` (one image, many captions).
        ``concepts`` (ids, p), each (images, slots), replaces the concepts chosen from ``pooled``, and
        ``has_image`` (images,) False hides an image's grid: text-only training gives both.
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

    def concepts(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        return state["concept_ids"].cpu().numpy(), state["concept_p"].float().cpu().numpy()


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

    Each step's input is the previous word's embedding and a gated attention context over the memory
    (grid regions and concept slots); the output layer shares its weights with the word embedding, and
    a pointer gives the slot tokens' logits.
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
        self.concepts = ConceptMemory(c)
        self.words = SlotWords(c, c.dim)
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

    def _memory(self, grid, pooled, index, concepts=None, has_image=None) -> State:
        m = self.concepts(self.values(grid), pooled, concepts, has_image)
        pooled = pooled * m["image"]
        state = {
            "values": m["memory"],  # (images, 1 + regions + slots, dim)
            "keys": self.keys(m["memory"]),  # (images, 1 + regions + slots, attention)
            "bias": m["hidden"].to(pooled.dtype) * -1e4,
            "slots": m["slots"], "empty": m["empty"], "concept_ids": m["concept_ids"], "concept_p": m["concept_p"],
            "h": torch.tanh(self.init_h(pooled)),  # (images, hidden)
            "c": torch.tanh(self.init_c(pooled)),
            "first": self.image_token(pooled) * m["image"],
        }
        return {k: _select(v, index) for k, v in state.items()}

    def _advance(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state["h"], state["c"]
        energy = self.score(torch.tanh(state["keys"] + self.query(h)[:, None]))[..., 0] + state["bias"]
        alpha = energy.softmax(1)[..., None]  # (batch, memory, 1)
        context = (alpha * state["values"]).sum(1) * torch.sigmoid(self.gate(h))  # (batch, dim)
        h, c = self.cell(torch.cat([self.drop(x), context], 1), (h, c))
        o = self.drop(self.out(self.drop(h)) + context)
        logits = self.words.logits(self.head(o), o, state["slots"], state["empty"])  # (batch, vocab)
        return logits, {**state, "h": h, "c": c}

    def start(self, grid, pooled):
        state = self._memory(grid, pooled, None)
        first = state.pop("first")
        return self._advance(first, state)

    def step(self, tokens, state):
        return self._advance(self.words.embed(self.embed, tokens, state["slots"]), state)

    def forward(self, grid, pooled, tokens, image_index=None, concepts=None, has_image=None):
        state = self._memory(grid, pooled, image_index, concepts, has_image)
        inputs = torch.cat([state.pop("first")[:, None], self.words.embed(self.embed, tokens, state["slots"])], 1)
        outputs = []
        for t in range(inputs.shape[1]):  # (batch, 1 + T, dim), one step at a time
            logits, state = self._advance(inputs[:, t], state)
            outputs.append(logits)
        return torch.stack(outputs, 1)  # (batch, 1 + T, vocab)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention (cached), cross-attention to the memory, MLP."""

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
        return self._split(k), self._split(v)  # (images, heads, memory, head_dim)

    def forward(self, x: torch.Tensor, cross: tuple[torch.Tensor, torch.Tensor], visible: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (batch, T, dim); ``visible`` (batch, 1, 1, memory) what cross-attention may see; ``past`` the
        cached keys and values of earlier positions."""
        b, t, d = x.shape
        p = self.p if self.training else 0.0
        q, k, v = (self._split(z) for z in self.qkv(self.ln1(x)).chunk(3, -1))
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        # With a cache, the new positions see every cached one; otherwise causal within x.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=past is None and t > 1)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
        y = F.scaled_dot_product_attention(self._split(self.cross_q(self.ln2(x))), *cross, attn_mask=visible,
                                           dropout_p=p)
        x = x + self.drop(self.cross_proj(y.transpose(1, 2).reshape(b, t, d)))
        x = x + self.drop(self.mlp(self.ln3(x)))
        return x, (k, v)


@register_decoder("gpt")
class GPTDecoder(Decoder):
    """A stack of causal transformer blocks; the image embedding is position 0; the memory (grid regions
    and concept slots) is cross-attended; a pointer gives the slot tokens' logits."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.pos = nn.Embedding(c.max_len, c.dim)
        self.image_token = nn.Linear(c.feature_dim, c.dim)
        self.memory = nn.Sequential(nn.Linear(c.feature_dim, c.dim), nn.LayerNorm(c.dim))
        self.concepts = ConceptMemory(c)
        self.words = SlotWords(c, c.dim)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self.drop = nn.Dropout(c.dropout)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def _memory(self, grid, pooled, index, concepts=None, has_image=None) -> tuple[list, State]:
        """Each block's cross-attention keys and values, and the rest of the memory, rows chosen by ``index``."""
        m = self.concepts(self.memory(grid), pooled, concepts, has_image)
        cross = [tuple(_select(z, index) for z in blk.memory(m["memory"])) for blk in self.blocks]
        rest = {"visible": (~m["hidden"])[:, None, None, :], "slots": m["slots"], "empty": m["empty"],
                "concept_ids": m["concept_ids"], "concept_p": m["concept_p"],
                "first": self.image_token(pooled) * m["image"]}
        return cross, {k: _select(v, index) for k, v in rest.items()}

    def _run(self, x: torch.Tensor, cross, rest: State, past=None):
        """x (batch, T, dim): the inputs with their position embeddings added."""
        x = self.drop(x)
        caches = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, cross[i], rest["visible"], None if past is None else past[i])
            caches.append(kv)
        h = self.ln(x)
        return self.words.logits(self.head(h), h, rest["slots"], rest["empty"]), caches  # (batch, T, vocab)

    @staticmethod
    def _pack(cross, caches, rest: State, position: torch.Tensor) -> State:
        state: State = {"position": position, **rest}
        for i, ((ck, cv), (k, v)) in enumerate(zip(cross, caches)):
            state.update({f"ck{i}": ck, f"cv{i}": cv, f"k{i}": k, f"v{i}": v})
        return state

    def _unpack(self, state: State):
        n = len(self.blocks)
        cross = [(state[f"ck{i}"], state[f"cv{i}"]) for i in range(n)]
        past = [(state[f"k{i}"], state[f"v{i}"]) for i in range(n)]
        rest = {k: state[k] for k in ("visible", "slots", "empty", "concept_ids", "concept_p")}
        return cross, past, rest

    def start(self, grid, pooled):
        cross, rest = self._memory(grid, pooled, None)
        first = rest.pop("first")
        logits, caches = self._run(first[:, None] + self.pos.weight[:1], cross, rest)
        position = torch.ones(pooled.shape[0], dtype=torch.long, device=pooled.device)
        return logits[:, -1], self._pack(cross, caches, rest, position)

    def step(self, tokens, state):
        if int(state["position"][0]) >= self.config.max_len:
            raise ValueError(f"caption longer than the model's {self.config.max_len} positions")
        return self.traceable_step(tokens, state)

    def traceable_step(self, tokens, state):
        """``step`` without its range check: the position stays a tensor (batch,), for export to trace."""
        cross, past, rest = self._unpack(state)
        x = self.words.embed(self.embed, tokens, rest["slots"])[:, None] + self.pos(state["position"])[:, None]
        logits, caches = self._run(x, cross, rest, past)
        return logits[:, -1], self._pack(cross, caches, rest, state["position"] + 1)

    def forward(self, grid, pooled, tokens, image_index=None, concepts=None, has_image=None):
        cross, rest = self._memory(grid, pooled, image_index, concepts, has_image)
        x = torch.cat([rest.pop("first")[:, None], self.words.embed(self.embed, tokens, rest["slots"])], 1)
        return self._run(x + self.pos.weight[: x.shape[1]], cross, rest)[0]  # (batch, 1 + T, vocab)
