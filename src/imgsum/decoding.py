"""Greedy and beam search, written once over the decoders' step interface, batched and incremental."""

from __future__ import annotations

import torch

from .models.decoders import Decoder, reorder_state


@torch.no_grad()
def greedy(decoder: Decoder, grid: torch.Tensor, pooled: torch.Tensor, eos_id: int, max_len: int = 20) -> list[list[int]]:
    """Most likely next word at each step, for a batch of images; token ids without <eos>."""
    logits, state = decoder.start(grid, pooled)  # (batch, vocab)
    tokens = logits.argmax(-1)
    out = [tokens]
    done = tokens == eos_id
    for _ in range(max_len - 1):
        if bool(done.all()):
            break
        logits, state = decoder.step(tokens, state)
        tokens = logits.argmax(-1).masked_fill(done, eos_id)  # finished rows keep emitting <eos>
        out.append(tokens)
        done |= tokens == eos_id
    return [_until_eos(row, eos_id) for row in torch.stack(out, 1).tolist()]


@torch.no_grad()
def beam_search(decoder: Decoder, grid: torch.Tensor, pooled: torch.Tensor, eos_id: int, beam: int = 3,
                max_len: int = 20, length_penalty: float = 0.0) -> list[list[int]]:
    """Keeps the ``beam`` best prefixes per image; the finished caption with the best
    ``log-probability / length ** length_penalty`` wins (0: plain log-probability)."""
    logits, state = decoder.start(grid, pooled)
    batch, vocab = logits.shape
    logp = logits.log_softmax(-1)  # (batch, vocab)
    scores, tokens = logp.topk(min(beam, vocab), -1)  # (batch, k)
    k = scores.shape[1]
    state = reorder_state(state, torch.arange(batch, device=logits.device).repeat_interleave(k))
    seqs = tokens[..., None]  # (batch, k, t)
    done = tokens == eos_id
    for _ in range(max_len - 1):
        if bool(done.all()):
            break
        logits, state = decoder.step(seqs[..., -1].reshape(-1), state)
        logp = logits.log_softmax(-1).view(batch, k, vocab)
        # A finished beam extends only by <eos>, at no cost, so it keeps its score and its place.
        frozen = torch.full_like(logp, float("-inf"))
        frozen[..., eos_id] = 0.0
        logp = torch.where(done[..., None], frozen, logp)
        scores, flat = (scores[..., None] + logp).view(batch, -1).topk(k, -1)  # (batch, k)
        parent = flat // vocab
        tokens = flat % vocab
        seqs = torch.cat([seqs.gather(1, parent[..., None].expand_as(seqs)), tokens[..., None]], -1)
        done = done.gather(1, parent) | (tokens == eos_id)
        rows = (parent + torch.arange(batch, device=parent.device)[:, None] * k).reshape(-1)
        state = reorder_state(state, rows)
    lengths = ((seqs != eos_id).sum(-1) + 1).clamp(max=seqs.shape[-1]).float()  # words + <eos>
    best = (scores / lengths**length_penalty).argmax(-1)
    return [_until_eos(seqs[b, best[b]].tolist(), eos_id) for b in range(batch)]


def _until_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def decode(decoder: Decoder, grid: torch.Tensor, pooled: torch.Tensor, eos_id: int, beam: int = 1,
           max_len: int = 20, length_penalty: float = 0.0) -> list[list[int]]:
    """Greedy for ``beam <= 1``, beam search otherwise."""
    if beam <= 1:
        return greedy(decoder, grid, pooled, eos_id, max_len)
    return beam_search(decoder, grid, pooled, eos_id, beam, max_len, length_penalty)
