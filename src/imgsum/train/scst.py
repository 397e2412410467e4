"""Self-critical sequence training (Rennie et al. 2017), with the mean reward of the other samples of the
same image as the baseline (Luo 2020): sample ``n`` captions per image, reward each with CIDEr-D
(:mod:`imgsum.train.reward`), and raise the log-probability of those that beat their siblings."""

from __future__ import annotations

from typing import Sequence

import torch

from ..concepts import FIRST_SLOT, render_slots
from ..models.decoders import Decoder
from ..text import Vocabulary
from .reward import CiderD


def concept_bias(p: torch.Tensor, vocab: int, boost: float) -> torch.Tensor:
    """What the concept boost adds to next-word logits, as :class:`imgsum.decoding.ConceptGuide` adds it at
    decoding: ``boost`` times each concept's probability at its slot tokens (``<cK>``, then the plurals ``<cKs>``).
    ``p``: the concepts' probabilities (rows, slots); returns (rows, vocab)."""
    bias = torch.zeros(len(p), vocab, dtype=p.dtype, device=p.device)
    bias[:, FIRST_SLOT : FIRST_SLOT + 2 * p.shape[1]] = boost * torch.cat([p, p], 1)
    return bias


@torch.no_grad()
def sample(model: Decoder, grid, pooled, n: int, max_len: int, vocab: Vocabulary, boost: float = 0.0,
           concept_p: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` captions sampled per image: token ids (images * n, max_len), 0 after <eos>; image i's are rows i*n...
    With ``boost``, from the model's distribution with the concept boost of decoding (:func:`concept_bias` of the
    images' concept probabilities ``concept_p``, (images, slots)), the policy the model captions with."""
    logits, state = model.start(grid.repeat_interleave(n, 0), pooled.repeat_interleave(n, 0))
    rows = logits.shape[0]
    out = torch.zeros(rows, max_len, dtype=torch.long, device=grid.device)
    alive = torch.ones(rows, dtype=torch.bool, device=grid.device)
    banned = list(vocab.never_emitted)
    bias = concept_bias(concept_p.repeat_interleave(n, 0), logits.shape[-1], boost) if boost else None
    for t in range(max_len):
        if bias is not None:
            logits = logits + bias
        logits[:, banned] = float("-inf")
        tokens = torch.multinomial(logits.float().softmax(-1), 1)[:, 0]
        out[:, t] = torch.where(alive, tokens, torch.zeros_like(tokens))
        alive &= tokens != vocab.eos_id
        if not alive.any():
            break
        logits, state = model.step(tokens, state)
    return out


def rewards(tokens: torch.Tensor, images: Sequence[str], n: int, concept_ids: torch.Tensor,
            pairs: Sequence[Sequence[str]], vocab: Vocabulary, cider: CiderD) -> torch.Tensor:
    """CIDEr-D of each sampled caption (images * n,), slot tokens said as their words."""
    out = []
    for row, ids in enumerate(tokens.tolist()):
        image = row // n
        slots = [pairs[c] for c in concept_ids[image].tolist()]
        out.append(cider.score(images[image], render_slots(vocab.words(ids), slots).split()))
    return torch.tensor(out)


def sample_and_score(model: Decoder, grid, pooled, concepts, images: Sequence[str], n: int, max_len: int,
                     vocab: Vocabulary, pairs: Sequence[Sequence[str]], cider: CiderD, boost: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``n`` sampled captions per image (images * n, max_len; with the concept ``boost``: :func:`sample`), each
    one's advantage over its siblings' mean reward (images * n,), and the mean reward. The loss is
    :meth:`imgsum.train.objective.Objective.self_critical`'s, with the same boost."""
    tokens = sample(model, grid, pooled, n, max_len, vocab, boost, concepts[1])
    reward = rewards(tokens.cpu(), images, n, concepts[0].cpu(), pairs, vocab, cider).view(-1, n)
    baseline = (reward.sum(1, keepdim=True) - reward) / (n - 1)
    return tokens, (reward - baseline).view(-1).to(grid.device), float(reward.mean())
