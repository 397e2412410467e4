"""Greedy and beam search, written once over a small step interface on numpy arrays.

Search sees a decoder only through a *stepper*:

* ``start(grid, pooled) -> (logits, state)``: logits (batch, vocab) float32 for the first word;
* ``step(tokens, state) -> (logits, state)``: tokens (batch,) int64, one word per row;
* ``reorder(state, index) -> state``: keeps (and repeats) the rows ``index`` (rows,) int64.

The state is opaque to search. Two backends implement the interface: :class:`TorchStepper` here
(wraps a :class:`~imgsum.models.decoders.Decoder`; torch is imported only when one is made) and
:class:`imgsum.runtime.OnnxStepper` (ONNX Runtime, no torch). A torch ``Decoder`` may be passed to
:func:`decode`, :func:`greedy` and :func:`beam_search` as is: it is wrapped on the way in.

Rows whose caption is finished are dropped from the batch as they finish, so a batch costs what its
longest caption costs, on the rows still running.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np


class Stepper(Protocol):
    def start(self, grid: Any, pooled: Any) -> tuple[np.ndarray, Any]: ...

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...

    def reorder(self, state: Any, index: np.ndarray) -> Any: ...


class TorchStepper:
    """The step interface over a torch ``Decoder``: state stays on the decoder's device, logits come back as numpy."""

    def __init__(self, decoder) -> None:
        import torch

        self.torch = torch
        self.decoder = decoder
        self.device = next(decoder.parameters()).device

    def start(self, grid, pooled) -> tuple[np.ndarray, dict]:
        grid = self.torch.as_tensor(grid, device=self.device)
        pooled = self.torch.as_tensor(pooled, device=self.device)
        with self.torch.no_grad():
            logits, state = self.decoder.start(grid, pooled)
        return logits.float().cpu().numpy(), state

    def step(self, tokens: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        with self.torch.no_grad():
            logits, state = self.decoder.step(self.torch.from_numpy(tokens).to(self.device), state)
        return logits.float().cpu().numpy(), state

    def reorder(self, state: dict, index: np.ndarray) -> dict:
        from .models.decoders import reorder_state

        return reorder_state(state, self.torch.from_numpy(index).to(self.device))


def as_stepper(decoder) -> Stepper:
    """A stepper as is; a torch ``Decoder`` wrapped in :class:`TorchStepper`."""
    return decoder if hasattr(decoder, "reorder") else TorchStepper(decoder)


def greedy(decoder, grid, pooled, eos_id: int, max_len: int = 20, banned: Sequence[int] = ()) -> list[list[int]]:
    """Most likely next word at each step, for a batch of images; token ids without <eos>.

    ``banned`` token ids are never emitted (for example <unk>, <pad>, <bos>).
    """
    stepper = as_stepper(decoder)
    logits, state = stepper.start(grid, pooled)  # (batch, vocab)
    ban = _ban(logits.shape[-1], banned)
    batch = logits.shape[0]
    out = np.full((batch, max_len), eos_id, dtype=np.int64)  # finished rows read as <eos> from then on
    alive = np.arange(batch)  # the images whose rows are still in the state, in state order
    for t in range(max_len):
        if t:
            logits, state = stepper.step(out[alive, t - 1], state)
        out[alive, t] = (logits + ban).argmax(-1)
        running = out[alive, t] != eos_id
        if not running.any():
            break
        if not running.all():  # drop the finished rows
            state = stepper.reorder(state, np.flatnonzero(running))
            alive = alive[running]
    return [_until_eos(row, eos_id) for row in out.tolist()]


def beam_search(decoder, grid, pooled, eos_id: int, beam: int = 3, max_len: int = 20,
                length_penalty: float = 0.0, banned: Sequence[int] = ()) -> list[list[int]]:
    """Keeps the ``beam`` best prefixes per image; the finished caption with the best
    ``log-probability / length ** length_penalty`` wins (0: plain log-probability).
    ``banned`` token ids are never emitted."""
    stepper = as_stepper(decoder)
    logits, state = stepper.start(grid, pooled)
    batch, vocab = logits.shape
    ban = _ban(vocab, banned)
    k = min(beam, vocab - len(set(banned)))
    scores, tokens = _topk(_log_softmax(logits) + ban, k)  # (batch, k)
    state = stepper.reorder(state, np.repeat(np.arange(batch), k))  # row b * k + j: image b, beam j
    seqs = tokens[..., None]  # (images, k, t), the images still searching
    done = tokens == eos_id  # (images, k)
    alive = np.arange(batch)
    results: list[list[int]] = [[] for _ in range(batch)]
    frozen = np.full(vocab, -np.inf, dtype=np.float32)
    frozen[eos_id] = 0.0  # a finished beam extends only by <eos>, at no cost: it keeps its score and place
    for _ in range(max_len - 1):
        finished = done.all(1)
        if finished.any():  # record the images whose beams have all ended, and drop their rows
            for i in np.flatnonzero(finished):
                results[alive[i]] = _best(seqs[i], scores[i], eos_id, length_penalty)
            keep = np.flatnonzero(~finished)
            if not len(keep):
                break
            state = stepper.reorder(state, (keep[:, None] * k + np.arange(k)).reshape(-1))
            seqs, scores, done, alive = seqs[keep], scores[keep], done[keep], alive[keep]
        n = len(alive)
        logits, state = stepper.step(seqs[..., -1].reshape(-1), state)
        logp = (_log_softmax(logits) + ban).reshape(n, k, vocab)
        if done.any():
            logp[done] = frozen
        scores, flat = _topk((scores[..., None] + logp).reshape(n, -1), k)  # (images, k)
        parent, tokens = flat // vocab, flat % vocab
        seqs = np.concatenate([np.take_along_axis(seqs, parent[..., None], 1), tokens[..., None]], -1)
        done = np.take_along_axis(done, parent, 1) | (tokens == eos_id)
        state = stepper.reorder(state, (parent + np.arange(n)[:, None] * k).reshape(-1))
    for i, image in enumerate(alive):  # cut at max_len
        results[image] = _best(seqs[i], scores[i], eos_id, length_penalty)
    return results


def _best(seqs: np.ndarray, scores: np.ndarray, eos_id: int, length_penalty: float) -> list[int]:
    """The winning beam of one image: seqs (k, t), scores (k,)."""
    lengths = np.minimum((seqs != eos_id).sum(-1) + 1, seqs.shape[-1]).astype(np.float32)  # words + <eos>
    return _until_eos(seqs[int((scores / lengths**length_penalty).argmax())].tolist(), eos_id)


def _ban(vocab: int, banned: Sequence[int]) -> np.ndarray:
    """Added to logits or log-probabilities: -inf at the banned ids, 0 elsewhere."""
    ban = np.zeros(vocab, dtype=np.float32)
    ban[list(banned)] = -np.inf
    return ban


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float32, copy=True)
    x -= x.max(-1, keepdims=True)
    x -= np.log(np.exp(x).sum(-1, keepdims=True))
    return x


def _topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of each row of ``x`` (rows, n), best first, and their indices."""
    if k < x.shape[-1]:
        index = np.argpartition(x, -k, axis=-1)[:, -k:]
    else:
        index = np.broadcast_to(np.arange(x.shape[-1]), x.shape)
    values = np.take_along_axis(x, index, -1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(values, order, -1), np.take_along_axis(index, order, -1)


def _until_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def decode(decoder, grid, pooled, eos_id: int, beam: int = 1, max_len: int = 20,
           length_penalty: float = 0.0, banned: Sequence[int] = ()) -> list[list[int]]:
    """Greedy for ``beam <= 1``, beam search otherwise. ``decoder``: a stepper or a torch ``Decoder``."""
    if beam <= 1:
        return greedy(decoder, grid, pooled, eos_id, max_len, banned)
    return beam_search(decoder, grid, pooled, eos_id, beam, max_len, length_penalty, banned)


def describe(decoder, grid, pooled, vocab, defaults: dict, beam: int | None = None, max_len: int | None = None,
             length_penalty: float | None = None) -> list[str]:
    """Captions as text: the model's decoding ``defaults`` where a setting is not given, and no <unk>."""
    ids = decode(decoder, grid, pooled, vocab.eos_id,
                 beam=defaults["beam"] if beam is None else beam,
                 max_len=defaults["max_len"] if max_len is None else max_len,
                 length_penalty=defaults["length_penalty"] if length_penalty is None else length_penalty,
                 banned=vocab.never_emitted)
    return [vocab.decode(row) for row in ids]
