"""Ensembles: several trained decoders over one encoder, vocabulary and concept table, captioning as one model.

An ensemble is a small JSON manifest beside (or pointing to) its members, which are ordinary models::

    {"format": "imgsum-ensemble", "format_version": 1, "name": "ensemble",
     "members": ["gpt", "lstm"], "weights": [0.7, 0.3], "decoding": {...}}

A member is named by its path relative to the manifest's folder, without suffix: each backend takes the form it
runs (``gpt.json``, the ONNX export, or ``gpt.safetensors``, the checkpoint), so one manifest serves both.
Captions come from one search over the members' mixed next-word log-probabilities
(:class:`imgsum.decoding.Ensemble`), with the ensemble's own decoding settings; the first member's encoder
encodes each image once. ``imgsum ensemble`` writes a manifest (:func:`make_ensemble`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .decoding import Caption, DecodingOptions, Ensemble, ensemble_weights, search_captions
from .files import write_text_atomic
from .images import Preprocess
from .model_info import ModelInfo, read_checkpoint_info
from .text import Vocabulary

ENSEMBLE_FORMAT = "imgsum-ensemble"
ENSEMBLE_VERSION = 1
SUFFIX = {"onnx": ".json", "torch": ".safetensors"}


@dataclass
class EnsembleSpec:
    """A parsed ensemble manifest; members are resolved against ``folder``."""

    name: str
    folder: Path
    members: list[str]
    weights: list[float]
    decoding: DecodingOptions

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.name}.json"

    def member_paths(self, backend: str) -> list[Path]:
        """The members' files that ``backend`` loads; FileNotFoundError names the first that is missing."""
        if backend not in SUFFIX:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(SUFFIX)}")
        paths = [self.folder / f"{member}{SUFFIX[backend]}" for member in self.members]
        for member, path in zip(self.members, paths):
            if not path.is_file():
                raise FileNotFoundError(f"ensemble {self.manifest}: its member {member!r} has no {backend} form "
                                        f"({path})")
        return paths

    def to_dict(self) -> dict:
        return {"format": ENSEMBLE_FORMAT, "format_version": ENSEMBLE_VERSION, "name": self.name,
                "members": self.members, "weights": self.weights, "decoding": self.decoding.to_dict()}

    def save(self) -> Path:
        write_text_atomic(self.manifest, json.dumps(self.to_dict(), indent=1) + "\n")
        return self.manifest


def is_ensemble(path: str | Path) -> bool:
    """An ensemble manifest (read from its first bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return path.suffix == ".json" and ENSEMBLE_FORMAT.encode() in f.read(256)
    except OSError:
        return False


def read_ensemble(path: str | Path) -> EnsembleSpec:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ensemble manifest at {path}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a JSON ensemble manifest ({err})") from err
    if not isinstance(d, dict) or d.get("format") != ENSEMBLE_FORMAT:
        raise ValueError(f"{path}: not an imgsum ensemble manifest")
    if d.get("format_version") != ENSEMBLE_VERSION:
        raise ValueError(f"{path}: ensemble version {d.get('format_version')!r}; this imgsum reads {ENSEMBLE_VERSION}")
    members, weights = d.get("members"), d.get("weights")
    if not members or not isinstance(members, list) or not isinstance(weights, list) or len(weights) != len(members):
        raise ValueError(f"{path}: an ensemble needs a list of members and one weight for each")
    return EnsembleSpec(name=d["name"], folder=path.parent, members=[str(m) for m in members],
                        weights=[float(w) for w in weights], decoding=DecodingOptions.from_dict(d.get("decoding", {})))


def member_info(path: Path) -> ModelInfo:
    """A member's metadata without loading it: from its ONNX manifest or its checkpoint's header."""
    if path.suffix == ".json":
        from .runtime.bundle import read_bundle

        return read_bundle(path).info
    return read_checkpoint_info(path)


def check_members(infos: Sequence[ModelInfo], names: Sequence[str]) -> None:
    """Raises ValueError unless the members can caption as one: the same encoder, preprocessing, vocabulary and
    concept table. Whether the classifier reads the photo's centre (``Preprocess.concept_crop``) may differ: the
    ensemble reads photos as its first member does, and gives every member those features."""
    first = infos[0]
    for info, name in zip(infos[1:], names[1:]):
        for what in ("encoder", "preprocess", "vocab", "concepts"):
            if _shared(getattr(info, what)) != _shared(getattr(first, what)):
                raise ValueError(f"ensemble member {name} has another {what} than {names[0]}: members must share the "
                                 "encoder, its preprocessing, the vocabulary and the concept table")
        if info.decoder.slots != first.decoder.slots:
            raise ValueError(f"ensemble member {name} has {info.decoder.slots} concept slots, {names[0]} "
                             f"{first.decoder.slots}")


def _shared(value: Any) -> Any:
    """What members must share of ``value``: all of it, but a preprocessing's ``concept_crop``."""
    return replace(value, concept_crop=False) if isinstance(value, Preprocess) else value


def ensemble_info(spec: EnsembleSpec, infos: Sequence[ModelInfo]) -> ModelInfo:
    """The ensemble's description: the first member's, with the ensemble's decoding, its decoder kind written as
    the members' (``gpt+lstm``), and its members and weights under ``training``."""
    first = infos[0]
    kind = "+".join(i.decoder.kind for i in infos)
    return replace(first, decoder=replace(first.decoder, kind=kind), decoding=spec.decoding,
                   training={"ensemble": {"members": spec.members, "weights": spec.weights}}, metrics={})


class EnsembleModel:
    """Loaded members as one model, with the interface of :class:`imgsum.runtime.ort.OnnxCaptionModel` (``info``,
    ``vocab``, ``stepper``, ``encode``, ``encode_wide``, ``describe``, ``generate``), so that
    :class:`imgsum.api.Captioner` runs it."""

    def __init__(self, spec: EnsembleSpec, members: Sequence[Any]) -> None:
        check_members([m.info for m in members], spec.members)
        self.spec = spec
        self.members = list(members)
        self.info = ensemble_info(spec, [m.info for m in members])
        self.vocab = Vocabulary.from_list(self.info.vocab)
        self.stepper = Ensemble([m.stepper for m in members], spec.weights)

    @classmethod
    def load(cls, spec: EnsembleSpec, backend: str, load_member: Callable[[Path], Any]) -> "EnsembleModel":
        """``load_member(path)``: a loaded model from a member's file for ``backend``."""
        paths = spec.member_paths(backend)
        check_members([member_info(p) for p in paths], spec.members)  # before loading any weights
        return cls(spec, [load_member(p) for p in paths])

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.members[0].encode(pixels)

    def encode_wide(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.members[0].encode_wide(pixels)

    def generate(self, pixels: np.ndarray, **overrides) -> list[Caption]:
        return self.describe(*self.encode_wide(pixels), **overrides)

    def describe(self, grid: np.ndarray, pooled: np.ndarray, **overrides) -> list[Caption]:
        return search_captions(self.stepper, grid, pooled, self.vocab, self.info.decoding.with_overrides(**overrides),
                               self.info.concepts)


def make_ensemble(members: Sequence[Path], weights: Sequence[float] | None, out: Path, name: str,
                  decoding: dict[str, Any]) -> EnsembleSpec:
    """Writes and returns ``out/NAME.json`` for the models ``members`` (checkpoints or ONNX manifests, each named by
    its path without suffix, relative to ``out``). ``weights`` default to equal; ``decoding`` overrides the first
    member's decoding settings. Raises ValueError for members that cannot caption as one."""
    members = [Path(m) for m in members]
    weights = ensemble_weights(weights or [1.0] * len(members), len(members))
    infos = [member_info(m) for m in members]
    check_members(infos, [str(m) for m in members])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    relative = [_relative(m.with_suffix(""), out.resolve()) for m in members]
    spec = EnsembleSpec(name=name, folder=out, members=relative, weights=weights,
                        decoding=infos[0].decoding.with_overrides(**decoding))
    spec.save()
    return spec


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path.resolve(), folder)).as_posix()
