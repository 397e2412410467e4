"""Decoding settings, and greedy and beam search written once over a small step interface on numpy arrays.

:class:`DecodingOptions` holds the settings; a model stores its own (``ModelInfo.decoding``) and a caller
changes some with :meth:`DecodingOptions.with_overrides`, the one place where defaults are worked out.

Search sees a decoder only through a *stepper*:

* ``start(grid, pooled) -> (logits, state)``: logits (batch, vocab) float32 for the first word;
* ``step(tokens, state) -> (logits, state)``: tokens (batch,) int64, one word per row;
* ``reorder(state, index) -> state``: keeps (and repeats) the rows ``index`` (rows,) int64.

The state is opaque to search. Two backends implement the interface:
:class:`imgsum.models.decoders.TorchStepper` (a torch decoder) and :class:`imgsum.runtime.ort.OnnxStepper`
(ONNX Runtime, no torch); :class:`Ensemble` runs several as one. This module needs numpy alone.

Rows whose caption is finished are dropped from the batch as they finish, so a batch costs what its
longest caption costs, on the rows still running.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from .concepts import FIRST_SLOT, Concept, render_slots
from .text import FREE_WORDS, Vocabulary, ngrams


@dataclass(frozen=True)
class DecodingOptions:
    """How captions are searched for. A new setting is a new field here, with the default that keeps
    today's behaviour: models saved before it then read as they did."""

    beam: int = field(default=3, metadata={"help": "beam width (1: greedy)"})
    max_len: int = field(default=20, metadata={"help": "most words per caption"})
    length_penalty: float = field(default=0.0, metadata={
        "help": "beam search ranks captions by log-probability / length ** this (0: plain log-probability)"})
    mention: float = field(default=0.0, metadata={
        "help": "a caption goes on until it says the most probable visual concept when the classifier gives "
                "that concept at least this probability (0: never required)"})
    concept_boost: float = field(default=0.0, metadata={
        "help": "added to the log-probability of saying a visual concept, times the concept's probability"})
    boost_after: float = field(default=1.0, metadata={
        "help": "the share of a visual concept's boost still added once the caption has said a concept at least "
                "as probable (1: all of it; 0: none: 'a bird' is not pushed on to 'a house finch')"})
    block_repeats: bool = field(default=False, metadata={
        "help": "never say a word twice in a row, nor a third time (a, the, and, in, on, of, with excepted), a "
                "two-word sequence a third time, nor a three-word sequence twice"})
    concepts_once: bool = field(default=False, metadata={
        "help": "with block_repeats: never say a word of the image's visual concepts a second time "
                "(no 'a chair is sitting on a chair')"})
    consensus: float = field(default=0.0, metadata={
        "help": "beam search: of the finished captions, choose the one that agrees most with the others (minimum "
                "Bayes risk: expected 1- to 4-word overlap, each caption weighted by softmax(its ranking score / "
                "this)); 0: the best-ranked caption"})

    def with_overrides(self, **overrides: Any) -> "DecodingOptions":
        """These options with each override that is not None in place (None keeps the value here)."""
        unknown = set(overrides) - set(option_names())
        if unknown:
            raise TypeError(f"unknown decoding option(s) {', '.join(sorted(unknown))}; "
                            f"the options are {', '.join(option_names())}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DecodingOptions":
        """As stored in a model's metadata; a setting it lacks takes its default."""
        unknown = set(d) - set(option_names())
        if unknown:
            raise ValueError(f"unknown decoding setting(s) {', '.join(sorted(unknown))}: "
                             "the model was saved by a newer imgsum")
        return cls(**d)


def option_names() -> list[str]:
    """The fields of :class:`DecodingOptions`, in order."""
    return [f.name for f in fields(DecodingOptions)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A command-line flag for each option (``--max-len`` for ``max_len``), defaulting to the model's own."""
    for f in fields(DecodingOptions):
        kind = _yes_no if isinstance(f.default, bool) else type(f.default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                            help=f"{f.metadata['help']} (default: the model's own)")


def _yes_no(text: str) -> bool:
    """A command-line boolean: yes/no, true/false, on/off or 1/0."""
    value = text.strip().lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (see :func:`add_arguments`); those left out are not in it."""
    return {name: getattr(args, name) for name in option_names() if getattr(args, name, None) is not None}


class Stepper(Protocol):
    def start(self, grid: Any, pooled: Any) -> tuple[np.ndarray, Any]: ...

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...

    def reorder(self, state: Any, index: np.ndarray) -> Any: ...

    def concepts(self, state: Any) -> tuple[np.ndarray, np.ndarray]: ...


class Ensemble:
    """Several steppers over one vocabulary as one stepper: the weighted mean of their next-word
    log-probabilities (the weighted geometric mean of their distributions). Each keeps its own state.
    The concepts are the first one's; every one must have chosen the same for each image."""

    def __init__(self, steppers: Sequence[Stepper], weights: Sequence[float]) -> None:
        self.steppers = list(steppers)
        self.weights = ensemble_weights(weights, len(self.steppers))

    def _mix(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        return sum(w * _log_softmax(x) for w, x in zip(self.weights, logits))

    def start(self, grid, pooled) -> tuple[np.ndarray, list]:
        logits, states = zip(*(s.start(grid, pooled) for s in self.steppers))
        first = self.steppers[0].concepts(states[0])[0]
        for stepper, state in zip(self.steppers[1:], states[1:]):
            if not np.array_equal(stepper.concepts(state)[0], first):
                raise ValueError("the ensemble's members chose different visual concepts for an image: "
                                 "they must share the encoder and the concept table")
        return self._mix(logits), list(states)

    def step(self, tokens: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        logits, states = zip(*(s.step(tokens, st) for s, st in zip(self.steppers, state)))
        return self._mix(logits), list(states)

    def reorder(self, state: list, index: np.ndarray) -> list:
        return [s.reorder(st, index) for s, st in zip(self.steppers, state)]

    def concepts(self, state: list) -> tuple[np.ndarray, np.ndarray]:
        return self.steppers[0].concepts(state[0])


def ensemble_weights(weights: Sequence[float], members: int) -> list[float]:
    """``weights`` scaled to sum to 1; ValueError unless there is one per member, none negative, not all zero."""
    if not members or len(weights) != members or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"{len(weights)} weight(s) for {members} member(s): an ensemble needs one non-negative weight "
                         f"per member, not all zero; got {list(weights)}")
    return [w / sum(weights) for w in weights]


def greedy(stepper: Stepper, grid, pooled, eos_id: int, max_len: int, banned: Sequence[int] = (),
           repeats: "RepeatBlock | None" = None, guide: "ConceptGuide | None" = None) -> list[list[int]]:
    """Most likely next word at each step, for a batch of images; token ids without <eos>.

    ``banned`` token ids are never emitted (for example <unk>, <pad>, <bos>); ``repeats`` blocks repetitions;
    ``guide`` favours saying the visual concepts.
    """
    logits, state = stepper.start(grid, pooled)  # (batch, vocab)
    if repeats is not None:
        repeats.begin(state)
    if guide is not None:
        guide.begin(state, logits.shape[-1])
    ban = _ban(logits.shape[-1], banned)
    batch = logits.shape[0]
    out = np.full((batch, max_len), eos_id, dtype=np.int64)  # finished rows read as <eos> from then on
    alive = np.arange(batch)  # the images whose rows are still in the state, in state order
    for t in range(max_len):
        if t:
            logits, state = stepper.step(out[alive, t - 1], state)
        if repeats is not None:
            logits = logits + repeats.mask(out[alive, :t], alive, logits.shape[-1])
        if guide is not None:
            logits = logits + guide.mask(out[alive, :t], alive, eos_id)
        out[alive, t] = (logits + ban).argmax(-1)
        running = out[alive, t] != eos_id
        if not running.any():
            break
        if not running.all():  # drop the finished rows
            state = stepper.reorder(state, np.flatnonzero(running))
            alive = alive[running]
    return [_until_eos(row, eos_id) for row in out.tolist()]


def beam_search(stepper: Stepper, grid, pooled, eos_id: int, beam: int, max_len: int, length_penalty: float,
                banned: Sequence[int] = (), repeats: "RepeatBlock | None" = None,
                guide: "ConceptGuide | None" = None, consensus: float = 0.0) -> list[list[int]]:
    """Keeps the ``beam`` best prefixes per image; the finished caption with the best
    ``log-probability / length ** length_penalty`` wins (0: plain log-probability), or with ``consensus`` > 0
    the one that agrees most with the others (:func:`consensus_choice`).
    ``banned`` token ids are never emitted; ``repeats`` blocks repetitions; ``guide`` favours saying the
    visual concepts."""
    logits, state = stepper.start(grid, pooled)
    if repeats is not None:
        repeats.begin(state)
    if guide is not None:
        guide.begin(state, logits.shape[-1])
        logits = logits + guide.mask(np.zeros((len(logits), 0), dtype=np.int64), np.arange(len(logits)), eos_id)
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
                results[alive[i]] = _best(seqs[i], scores[i], eos_id, length_penalty, consensus)
            keep = np.flatnonzero(~finished)
            if not len(keep):
                break
            state = stepper.reorder(state, (keep[:, None] * k + np.arange(k)).reshape(-1))
            seqs, scores, done, alive = seqs[keep], scores[keep], done[keep], alive[keep]
        n = len(alive)
        logits, state = stepper.step(seqs[..., -1].reshape(-1), state)
        logp = (_log_softmax(logits) + ban).reshape(n, k, vocab)
        if repeats is not None:
            logp += repeats.mask(seqs.reshape(n * k, -1), np.repeat(alive, k), vocab).reshape(n, k, vocab)
        if guide is not None:
            logp += guide.mask(seqs.reshape(n * k, -1), np.repeat(alive, k), eos_id).reshape(n, k, vocab)
        if done.any():
            logp[done] = frozen
        scores, flat = _topk((scores[..., None] + logp).reshape(n, -1), k)  # (images, k)
        parent, tokens = flat // vocab, flat % vocab
        seqs = np.concatenate([np.take_along_axis(seqs, parent[..., None], 1), tokens[..., None]], -1)
        done = np.take_along_axis(done, parent, 1) | (tokens == eos_id)
        state = stepper.reorder(state, (parent + np.arange(n)[:, None] * k).reshape(-1))
    for i, image in enumerate(alive):  # cut at max_len
        results[image] = _best(seqs[i], scores[i], eos_id, length_penalty, consensus)
    return results


class RepeatBlock:
    """Which next words would make a caption repeat itself: the word just said, a word said twice already (unless
    ``free``), the word that would say a two-word sequence a third time, or a three-word sequence a second time;
    with ``concepts_once``, a word of the image's concepts said once already.

    ``aliases``, given the state ``start`` made, says for each image which words each slot token says (as
    vocabulary ids; a word outside the vocabulary gets a negative id of its own), so that repetitions are
    counted on the words a caption shows: "tennis" then ``<c0>`` meaning "tennis ball" say "tennis" twice."""

    def __init__(self, free: Sequence[int], aliases: Callable[[Any], list[dict[int, list[int]]]] | None = None,
                 concepts_once: bool = False) -> None:
        self.free = frozenset(free)
        self.aliases = aliases
        self.concepts_once = concepts_once  # the words the slots say, once at most
        self.says: list[dict[int, list[int]]] | None = None

    def begin(self, state) -> None:
        self.says = self.aliases(state) if self.aliases else None

    def banned(self, seq: list[int], says: dict[int, list[int]] | None = None) -> list[int]:
        once: set[int] = set()
        if says:
            seq = [w for t in seq for w in says.get(t, [t])]
            if self.concepts_once:
                once = {w for words in says.values() for w in words}
        out = [t for t in set(seq) if t not in self.free and (seq.count(t) >= 2 or t in once)]
        if seq:
            out.append(seq[-1])  # never the same word twice in a row ("is is")
            after = [seq[i + 1] for i in range(len(seq) - 1) if seq[i] == seq[-1]]  # what followed the last word
            out += [t for t in set(after) if after.count(t) >= 2]
        if len(seq) >= 2:
            a, b = seq[-2], seq[-1]
            out += [seq[i + 2] for i in range(len(seq) - 2) if seq[i] == a and seq[i + 1] == b]
        if says and out:
            blocked = set(out)
            out = [t for t in out if t >= 0] + [t for t, words in says.items() if blocked.intersection(words)]
        return out

    def mask(self, seqs: np.ndarray, images: np.ndarray, vocab: int) -> np.ndarray:
        """seqs (rows, t) made for ``images`` (rows,) -> (rows, vocab): -inf at each row's blocked words."""
        mask = np.zeros((len(seqs), vocab), dtype=np.float32)
        for row, (seq, image) in enumerate(zip(seqs.tolist(), images.tolist())):
            blocked = self.banned(seq, self.says[image] if self.says else None)
            if blocked:
                mask[row, blocked] = -np.inf
        return mask


class SlotAliases:
    """For :class:`RepeatBlock`: the words each image's slot tokens say, as vocabulary ids."""

    def __init__(self, stepper: Stepper, vocab: Vocabulary, concepts: Sequence[Sequence[str]]) -> None:
        self.stepper, self.vocab, self.concepts = stepper, vocab, concepts

    def _ids(self, phrase: str) -> list[int]:
        return [self.vocab.stoi.get(w, -1 - hash(w) % 1_000_000) for w in phrase.split()]

    def __call__(self, state) -> list[dict[int, list[int]]]:
        ids, _ = self.stepper.concepts(state)
        slots = ids.shape[1]
        out = []
        for image in ids.tolist():
            says = {}
            for k, cid in enumerate(image):
                word, plural = self.concepts[cid][:2]
                says[FIRST_SLOT + k], says[FIRST_SLOT + slots + k] = self._ids(word), self._ids(plural)
            out.append(says)
        return out


class ConceptGuide:
    """Favours saying an image's visual concepts: adds ``boost`` times each concept's probability to the
    log-probability of its slot tokens, and, when the most probable concept has at least ``mention``,
    keeps a caption from ending before it has said that concept (``<c0>`` or ``<c0s>``). Once a caption has
    said a concept at least as probable as another, only ``after`` times that one's boost is added."""

    def __init__(self, stepper: Stepper, mention: float, boost: float, after: float = 1.0) -> None:
        self.stepper, self.mention, self.boost, self.after = stepper, mention, boost, after

    def begin(self, state, vocab: int) -> None:
        """Reads the concepts ``start`` chose for each image; ``vocab``: the logits' width."""
        _, p = self.stepper.concepts(state)
        self.vocab_size = vocab
        self.slots = p.shape[1]
        self.must = (p[:, 0] >= self.mention) if self.mention > 0 else np.zeros(len(p), dtype=bool)
        self.bonus = np.concatenate([p, p], 1).astype(np.float32) * self.boost  # (images, 2 * slots)

    def mask(self, seqs: np.ndarray, images: np.ndarray, eos_id: int) -> np.ndarray:
        """Added to the scores of rows ``seqs`` (rows, t), made for ``images`` (rows,): (rows, vocab)."""
        add = np.zeros((len(seqs), self.vocab_size), dtype=np.float32)
        bonus = self.bonus[images]
        if self.after != 1.0:
            bonus = bonus * np.where(_covered(seqs, bonus), np.float32(self.after), np.float32(1.0))
        add[:, FIRST_SLOT : FIRST_SLOT + 2 * self.slots] = bonus
        said = (seqs == FIRST_SLOT) | (seqs == FIRST_SLOT + self.slots)
        add[self.must[images] & ~said.any(1), eos_id] = -np.inf
        return add


def _covered(seqs: np.ndarray, bonus: np.ndarray) -> np.ndarray:
    """Whether each row of ``seqs`` (rows, t) has said a concept whose boost is at least each slot token's in
    ``bonus`` (rows, slot tokens: ``<cK>`` then ``<cKs>``, the same boost for both): (rows, slot tokens)."""
    slot = seqs - FIRST_SLOT
    said = (slot >= 0) & (slot < bonus.shape[1])
    boost = np.take_along_axis(bonus, np.where(said, slot, 0), 1)  # (rows, t): each word's boost, if a slot token
    return bonus <= np.where(said, boost, -np.inf).max(1, initial=-np.inf)[:, None]


def _best(seqs: np.ndarray, scores: np.ndarray, eos_id: int, length_penalty: float,
          consensus: float = 0.0) -> list[int]:
    """The winning beam of one image: seqs (k, t), scores (k,)."""
    lengths = np.minimum((seqs != eos_id).sum(-1) + 1, seqs.shape[-1]).astype(np.float32)  # words + <eos>
    ranked = scores / lengths**length_penalty
    if consensus > 0:
        return consensus_choice([_until_eos(row, eos_id) for row in seqs.tolist()], ranked, consensus)
    return _until_eos(seqs[int(ranked.argmax())].tolist(), eos_id)


def overlap(a: Sequence[int], b: Sequence[int], n_max: int = 4) -> float:
    """How alike two captions are, from 0 to 1: the mean over n = 1..``n_max`` of the share of n-word
    sequences they have in common (2 |common| / (|a's| + |b's|); 0 for an n longer than both)."""
    return _overlap(_grams(a, n_max), _grams(b, n_max))


def _grams(caption: Sequence[int], n_max: int = 4) -> list[Counter]:
    return [ngrams(caption, n) for n in range(1, n_max + 1)]


def _overlap(a: list[Counter], b: list[Counter]) -> float:
    """:func:`overlap` of two captions' :func:`_grams`."""
    total = 0.0
    for ga, gb in zip(a, b):
        size = ga.total() + gb.total()
        if size:
            total += 2 * (ga & gb).total() / size
    return total / len(a)


def consensus_choice(captions: Sequence[Sequence[int]], ranked: np.ndarray, temperature: float) -> list[int]:
    """Minimum Bayes risk choice among one image's finished captions: the one whose expected :func:`overlap`
    with them all is highest, each weighted by softmax(``ranked`` / ``temperature``) (its ranking score).
    Captions scored -inf (never reached) are left out."""
    keep = np.flatnonzero(np.isfinite(ranked))
    if not len(keep):
        return list(captions[int(np.argmax(ranked))])
    weights = np.exp((ranked[keep] - ranked[keep].max()) / temperature)
    grams = [_grams(captions[i]) for i in keep]
    alike = np.eye(len(keep))
    for i, j in zip(*np.triu_indices(len(keep), 1)):
        alike[i, j] = alike[j, i] = _overlap(grams[i], grams[j])
    alike[np.diag_indices(len(keep))] = [_overlap(g, g) for g in grams]  # 0 for an empty caption
    return list(captions[keep[int(np.argmax(alike @ weights))]])


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
    n = x.shape[-1]
    index = _topk_in_blocks(x, k)
    if index is None or (index >= n).any():  # narrow rows, or fewer than k values above -inf (padding was chosen)
        index = np.argpartition(x, -k, axis=-1)[:, -k:] if k < n else np.broadcast_to(np.arange(n), x.shape)
    values = np.take_along_axis(x, index, -1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(values, order, -1), np.take_along_axis(index, order, -1)


def _topk_in_blocks(x: np.ndarray, k: int, block: int = 128) -> np.ndarray | None:
    """The indices of the ``k`` largest values of each row of ``x`` (rows, n), in no order; None for rows too
    narrow to gain. A row's ``k`` largest values lie in the ``k`` blocks of ``block`` neighbours with the largest
    maxima, so the row is first cut down to those blocks (a vectorised maximum, then a partition of ``k * block``
    values instead of ``n``): about five times faster for a beam's ``k * vocabulary`` candidates. The last block is
    padded with -inf: an index past the row means fewer than ``k`` values above -inf."""
    rows, n = x.shape
    blocks = -(-n // block)
    if blocks <= 2 * k:
        return None
    if blocks * block != n:
        x = np.concatenate([x, np.full((rows, blocks * block - n), -np.inf, x.dtype)], 1)
    grouped = x.reshape(rows, blocks, block)
    best = np.argpartition(grouped.max(-1), -k, axis=-1)[:, -k:]  # (rows, k) blocks
    at = np.argpartition(np.take_along_axis(grouped, best[..., None], 1).reshape(rows, k * block), -k, axis=-1)[:, -k:]
    return np.take_along_axis(best, at // block, -1) * block + at % block


def _until_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def search(stepper: Stepper, grid, pooled, eos_id: int, options: DecodingOptions,
           banned: Sequence[int] = (), repeats: RepeatBlock | None = None) -> list[list[int]]:
    """Token ids of one caption per image: greedy for ``options.beam <= 1``, beam search otherwise.
    ``repeats`` (used when ``options.block_repeats``) blocks repetitions."""
    repeats = repeats if options.block_repeats else None
    guide = None
    if options.mention > 0 or options.concept_boost:
        guide = ConceptGuide(stepper, options.mention, options.concept_boost, options.boost_after)
    if options.beam <= 1:
        return greedy(stepper, grid, pooled, eos_id, options.max_len, banned, repeats, guide)
    return beam_search(stepper, grid, pooled, eos_id, options.beam, options.max_len, options.length_penalty, banned,
                       repeats, guide, options.consensus)


@dataclass
class Caption:
    """A caption and the visual concepts (most probable first) the model had in mind."""

    text: str
    concepts: list[Concept] = field(default_factory=list)


class _FirstState:
    """A stepper that keeps the state its ``start`` made (it holds the concepts chosen for each image)."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper, self.first = stepper, None

    def start(self, grid, pooled):
        logits, self.first = self.stepper.start(grid, pooled)
        return logits, self.first

    def step(self, tokens, state):
        return self.stepper.step(tokens, state)

    def reorder(self, state, index):
        return self.stepper.reorder(state, index)

    def concepts(self, state):
        return self.stepper.concepts(state)


def search_captions(stepper: Stepper, grid, pooled, vocab: Vocabulary, options: DecodingOptions,
                    concepts: Sequence[Sequence[str]]) -> list[Caption]:
    """One caption per image, with its concepts: :func:`search`, never emitting <unk> nor the other specials;
    slot tokens become their concept's word. ``concepts``: the model's (word, plural) pairs by concept id."""
    first = _FirstState(stepper)
    free = [vocab.stoi[w] for w in FREE_WORDS if w in vocab.stoi]
    repeats = RepeatBlock(free, SlotAliases(stepper, vocab, concepts), options.concepts_once)
    rows = search(first, grid, pooled, vocab.eos_id, options, vocab.never_emitted, repeats)
    ids, p = stepper.concepts(first.first)
    out = []
    for row, image_ids, image_p in zip(rows, ids.tolist(), p.tolist()):
        slots = [concepts[i] for i in image_ids]
        text = render_slots(vocab.words(row), slots)
        out.append(Caption(text, [Concept(w, q) for (w, _), q, i in zip(slots, image_p, image_ids) if i]))
    return out
