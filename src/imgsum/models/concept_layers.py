"""What the decoders share to use visual concepts (:mod:`imgsum.concepts`): choosing an image's concept
words from the encoder's ImageNet head, embedding them as memory slots beside the grid, and pointing at
a slot to say its word.

The vocabulary's ids ``FIRST_SLOT .. FIRST_SLOT + 2 * slots`` are the slot tokens: ``<cK>`` says slot
K's word and ``<cKs>`` its plural (:func:`imgsum.concepts.slot_tokens`). Their logits come from a
pointer that compares the decoder state with each slot, so a word that no training caption contains
(koala) can still be said when the classifier sees it; as an input, a slot token carries its concept's
embedding, so the decoder knows what it said. With ``memory_layers``, self-attention layers refine the memory
(regions and slots) once an image before the decoder reads it (:class:`MemoryEncoder`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..concepts import FIRST_SLOT, ConceptTable
from ..model_info import DecoderConfig


def concept_sizes(table: ConceptTable, classes: int = 1000) -> dict[str, int]:
    """The :class:`~imgsum.model_info.DecoderConfig` fields that a concept table fixes."""
    return {"concepts": len(table), "nodes": table.num_nodes, "depth": int(table.ancestors.shape[1]),
            "classes": classes}


class ConceptHead(nn.Module):
    """Pooled features -> the ``slots`` most probable concept words (ids, p); (ids, p) -> slot embeddings.

    Its buffers are the encoder's ImageNet classifier, the class -> word table and each word's WordNet
    ancestors (:meth:`load`), saved with the decoder so that a checkpoint carries the concepts it was
    trained with. A word's embedding is its own (zero for words no caption taught) plus the mean of its
    ancestors', so an unseen word sits near the seen words it is a kind of.
    """

    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.slots = c.slots
        self.register_buffer("classifier_weight", torch.zeros(c.classes, c.feature_dim))
        self.register_buffer("classifier_bias", torch.zeros(c.classes))
        self.register_buffer("class_words", torch.zeros(c.classes, c.concepts))
        self.register_buffer("ancestors", torch.zeros(c.concepts, c.depth, dtype=torch.long))
        self.word = nn.Embedding(c.concepts, c.dim, padding_idx=0)
        self.node = nn.Embedding(c.nodes, c.dim, padding_idx=0)
        self.prob = nn.Linear(3, c.dim)
        self.slot = nn.Embedding(c.slots, c.dim)
        self.norm = nn.LayerNorm(c.dim)
        nn.init.zeros_(self.word.weight)

    @torch.no_grad()
    def load(self, table: ConceptTable, classifier: nn.Linear) -> None:
        """Fills the buffers from the concept table and the encoder's ImageNet classifier."""
        self.classifier_weight.copy_(classifier.weight)
        self.classifier_bias.copy_(classifier.bias)
        self.class_words.copy_(torch.from_numpy(table.class_words))
        self.ancestors.copy_(torch.from_numpy(table.ancestors))

    def select(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, C) -> concept ids (batch, slots) and their probabilities, most probable first."""
        probs = (pooled @ self.classifier_weight.t() + self.classifier_bias).softmax(-1)
        p = (probs @ self.class_words).clamp(max=1.0)
        # Rank on integers, ties (the words of one class have the same probability) to the lower id, so that
        # torch and ONNX Runtime order the slots alike; id 0 pads and is never chosen.
        n = p.shape[1]
        ids = torch.arange(n, device=p.device)
        rank = (p * 1e6).long() * n + (n - 1 - ids)
        rank = torch.cat([torch.full_like(rank[:, :1], -1), rank[:, 1:]], 1)
        ids = rank.topk(self.slots, dim=1).indices
        return ids, p.gather(1, ids)

    def forward(self, ids: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Slot embeddings (batch, slots, dim); slots with id 0 are empty."""
        anc = self.ancestors[ids]  # (batch, slots, depth)
        count = (anc > 0).sum(-1, keepdim=True).clamp(min=1)
        e = self.word(ids) + self.node(anc).sum(-2) / count
        feats = torch.stack([p, p.clamp(min=1e-4).log() / 5, (p > 0.5).float()], -1)
        return self.norm(e + self.prob(feats) + self.slot.weight[: ids.shape[1]])


class ConceptMemory(nn.Module):
    """An image's memory: a null slot (always visible), the grid regions, then the concept slots.

    ``concepts`` (ids, p) replaces the concepts the classifier chooses from ``pooled``, and ``has_image``
    False hides the grid: training on captions without images (text-only) uses both.
    """

    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.head = ConceptHead(c)
        self.null = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.encoder = MemoryEncoder(c) if c.memory_layers else None

    def forward(self, grid_values: torch.Tensor, pooled: torch.Tensor, concepts=None, has_image=None) -> dict[str, torch.Tensor]:
        ids, p = self.head.select(pooled) if concepts is None else concepts
        if has_image is None:
            has_image = torch.ones(grid_values.shape[0], dtype=torch.bool, device=grid_values.device)
        slots = self.head(ids, p)
        empty = ids == 0
        hidden = torch.cat([torch.zeros_like(has_image)[:, None], ~has_image[:, None].expand(-1, grid_values.shape[1]),
                            empty], 1)  # (images, 1 + regions + slots), True where not to look
        memory = torch.cat([self.null.expand(grid_values.shape[0], -1, -1), grid_values, slots], 1)
        if self.encoder is not None:
            memory = self.encoder(memory, hidden, grid_values.shape[1])
        return {"memory": memory, "hidden": hidden, "slots": slots, "empty": empty, "concept_ids": ids,
                "concept_p": p, "image": has_image[:, None].to(memory.dtype)}


class MemoryEncoder(nn.Module):
    """Pre-norm self-attention layers over an image's memory (null, grid regions, concept slots), run once an
    image before decoding: each region learns its place in the grid and sees the others and the concepts, as the
    encoder of a transformer captioner does. Heads of 64 channels."""

    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        if c.regions <= 0:
            raise ValueError("memory_layers needs the grid's number of regions (DecoderConfig.regions)")
        self.position = nn.Parameter(torch.randn(1, c.regions, c.dim) * 0.02)
        self.layers = nn.ModuleList(MemoryLayer(c) for _ in range(c.memory_layers))
        self.norm = nn.LayerNorm(c.dim)
        if c.memory_scope not in ("all", "regions"):
            raise ValueError(f"memory_scope must be 'all' or 'regions', not {c.memory_scope!r}")
        self.regions_only = c.memory_scope == "regions"

    def forward(self, memory: torch.Tensor, hidden: torch.Tensor, regions: int) -> torch.Tensor:
        """``memory`` (images, M, dim): the null slot, ``regions`` grid regions, the concept slots; ``hidden``
        (images, M) True where no one may look. Text-only training's hidden placeholder grid has one region. With
        ``memory_scope`` "regions" the regions see the concept slots, and the slots are returned as they came."""
        if regions > self.position.shape[1]:
            raise ValueError(f"the model was trained on grids of {self.position.shape[1]} regions, not {regions}")
        slots = memory[:, 1 + regions:]
        x = torch.cat([memory[:, :1], memory[:, 1: 1 + regions] + self.position[:, :regions], slots], 1)
        visible = (~hidden)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, visible)
        x = self.norm(x)
        return torch.cat([x[:, : 1 + regions], slots], 1) if self.regions_only else x


class MemoryLayer(nn.Module):
    """One pre-norm layer: self-attention (what ``visible`` (images, 1, 1, M) allows), then an MLP."""

    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.heads = max(1, c.dim // 64)
        self.ln1, self.ln2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.mlp = nn.Sequential(nn.Linear(c.dim, c.mlp_ratio * c.dim), nn.GELU(), nn.Linear(c.mlp_ratio * c.dim, c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.p = c.dropout

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        b, m, d = x.shape
        q, k, v = (z.view(b, m, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).chunk(3, -1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, m, d)))
        return x + self.drop(self.mlp(self.ln2(x)))


class Pointer(nn.Module):
    """Logits of the slot tokens, <cK> then <cKs>, from the decoder's output and the slot embeddings."""

    def __init__(self, c: DecoderConfig, width: int) -> None:
        super().__init__()
        self.q = nn.Linear(width, 2 * c.dim)
        self.k = nn.Linear(c.dim, c.dim)
        self.scale = 1 / math.sqrt(c.dim)

    def forward(self, h: torch.Tensor, slots: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        """h (batch, [T,] width), slots (batch, K, dim), empty (batch, K) -> (batch, [T,] 2K)."""
        singular, plural = self.q(h).chunk(2, -1)
        k = self.k(slots)
        if h.dim() == 3:
            k, empty = k[:, None], empty[:, None]
        scores = torch.cat([(singular[..., None, :] * k).sum(-1), (plural[..., None, :] * k).sum(-1)], -1)
        return (scores * self.scale).masked_fill(torch.cat([empty, empty], -1), -1e4)


class SlotWords(nn.Module):
    """What the decoders share: the word embedding with slot tokens carrying their concept, and the output
    logits with the pointer's in the slot tokens' places."""

    def __init__(self, c: DecoderConfig, width: int) -> None:
        super().__init__()
        self.slots = c.slots
        self.slot_in = nn.Linear(c.dim, c.dim)
        self.pointer = Pointer(c, width)

    def embed(self, embedding: nn.Embedding, tokens: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """tokens (batch, [T]) -> (batch, [T,] dim)."""
        rel = tokens - FIRST_SLOT
        is_slot = (rel >= 0) & (rel < 2 * self.slots)
        which = torch.where(is_slot, rel % self.slots, torch.zeros_like(rel))
        index = which.reshape(which.shape[0], -1)[..., None].expand(-1, -1, slots.shape[-1])
        concept = slots.gather(1, index).reshape(*tokens.shape, slots.shape[-1])
        return embedding(tokens) + self.slot_in(concept) * is_slot[..., None]

    def logits(self, words: torch.Tensor, h: torch.Tensor, slots: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        """The output layer's ``words`` logits (batch, [T,] vocab) with the slot tokens' replaced by the pointer's."""
        end = FIRST_SLOT + 2 * self.slots
        return torch.cat([words[..., :FIRST_SLOT], self.pointer(h, slots, empty), words[..., end:]], -1)
