"""What one training step computes with gradients, as one module: DDP wraps it, and sees one forward
(the image captions and the text-only captions together) for each backward.

Both objectives return sums, not means (the summed loss, the number of tokens it is over, and for
cross-entropy the correctly predicted tokens of the image captions and their number), so that the trainer
can divide by the whole batch's count across processes (:func:`imgsum.train.distributed.global_mean`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.decoders import Decoder
from .examples import TextBatch, targets
from .scst import concept_bias

MASKED = -1e3  # logits below this are an empty slot's (the pointer masks them at -1e4)


class Objective(nn.Module):
    def __init__(self, decoder: Decoder, label_smoothing: float, eos_id: int, text_with_image: float = 0.0) -> None:
        super().__init__()
        self.decoder = decoder
        self.label_smoothing = label_smoothing
        self.eos_id = eos_id
        self.text_with_image = text_with_image

    def forward(self, kind: str, *args, **kwargs) -> tuple[torch.Tensor, ...]:
        if kind == "xe":
            return self.cross_entropy(*args, **kwargs)
        if kind == "scst":
            return self.self_critical(*args, **kwargs)
        if kind == "scst+xe":
            return self.self_critical_and_xe(*args, **kwargs)
        raise ValueError(f"unknown objective {kind!r}")

    def cross_entropy(self, grid, pooled, concepts, tokens, targets_, image_index,
                      text: TextBatch | None = None) -> tuple[torch.Tensor, ...]:
        """Label-smoothed cross-entropy of image captions and, with a text corpus, of text-only captions
        (their grid hidden, or a share of them shown with another image: :meth:`text_images`): (loss sum, tokens,
        correct image-caption tokens, image-caption tokens)."""
        logits = self.decoder(grid, pooled, tokens, image_index, concepts)  # (captions, 1 + T, vocab)
        loss, count = self.smoothed_nll(logits, targets_)
        mask = targets_ != 0
        correct = ((logits.argmax(-1) == targets_) & mask).sum()
        if text is not None:
            text_grid, text_pooled, has_image = self.text_images(grid, pooled, text.image)
            text_logits = self.decoder(text_grid, text_pooled, text.tokens, None, (text.concept_ids, text.concept_p),
                                       has_image)
            text_loss, text_count = self.smoothed_nll(text_logits, targets(text.tokens, self.eos_id))
            loss, count = loss + text_loss, count + text_count
        return loss, count, correct, mask.sum()

    def text_images(self, grid, pooled, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the captions of a :class:`TextBatch` are shown with (grid, pooled, and which have an image): their own
        image of the batch where ``image`` >= 0 (``own_concepts``); for the text-only rest (-1), none, or, for a share
        ``text_with_image`` of them, a random image of the batch, which their concepts, not the picture, describe
        (a koala's caption beside a photo of a dog: the confident concept, not the scene, is the subject)."""
        n = len(image)
        if self.text_with_image <= 0 and not bool((image >= 0).any()):  # draws nothing from the random stream
            hidden = torch.zeros(n, dtype=torch.bool, device=grid.device)
            return grid.new_zeros(n, 1, grid.shape[-1]), pooled.new_zeros(n, pooled.shape[-1]), hidden
        pick = image.clone()
        if self.text_with_image > 0:
            drawn = (image < 0) & (torch.rand(n, device=grid.device) < self.text_with_image)
            pick[drawn] = torch.randint(len(grid), (int(drawn.sum()),), device=grid.device)
        shown = pick >= 0
        keep = shown.to(grid.dtype)
        pick = pick.clamp(min=0)
        return grid[pick] * keep[:, None, None], pooled[pick] * keep[:, None], shown

    def smoothed_nll(self, logits, targets_) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the words (and <eos>) of ``targets_``, and how many there are; label
        smoothing spreads over the tokens that can be said (not the empty slots' masked ones)."""
        logp = logits.log_softmax(-1)
        mask = targets_ != 0
        nll = -logp.gather(-1, targets_[..., None])[..., 0]
        sayable = logits > MASKED
        smooth = -(logp * sayable).sum(-1) / sayable.sum(-1)
        eps = self.label_smoothing
        return (((1 - eps) * nll + eps * smooth) * mask).sum(), mask.sum()

    def self_critical(self, grid, pooled, concepts, tokens, advantage, boost: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy-gradient loss of sampled captions ``tokens`` (images * n, max_len; image i's are rows
        i*n...) with their ``advantage`` (images * n,): (loss sum, tokens). With ``boost``, of the policy they were
        sampled from: the model's logits plus the concept boost (:func:`~imgsum.train.scst.concept_bias`)."""
        n = len(tokens) // len(grid)
        inputs = torch.where(tokens == self.eos_id, torch.zeros_like(tokens), tokens)[:, :-1]
        index = torch.arange(len(grid), device=grid.device).repeat_interleave(n)
        logits = self.decoder(grid, pooled, inputs, index, concepts)  # (images * n, max_len, vocab)
        if boost:
            logits = logits + concept_bias(concepts[1][index], logits.shape[-1], boost)[:, None]
        logp = logits.log_softmax(-1).gather(2, tokens[..., None])[..., 0]
        mask = (tokens != 0).float()
        return -(advantage[:, None] * logp * mask).sum(), mask.sum()

    def self_critical_and_xe(self, scst: tuple, xe: tuple) -> tuple[torch.Tensor, ...]:
        """Both losses in one forward (as DDP needs): :meth:`self_critical` of ``scst``'s arguments, then
        :meth:`cross_entropy`'s loss and tokens of ``xe``'s (a regulariser of self-critical training)."""
        return (*self.self_critical(*scst), *self.cross_entropy(*xe)[:2])
