"""Captioning with ONNX Runtime: the encoder, the decoder's step interface, and the two together."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..decoding import Caption, search_captions
from ..text import Vocabulary
from .bundle import Bundle, read_bundle


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session running each operator on ``threads`` threads (default 1).

    Captioning many images gets its parallelism mostly from encoding them in the image workers while the
    decoder runs (:meth:`imgsum.api.Captioner.caption_batch`); see :class:`OnnxCaptionModel` for who gets
    how many threads. Idle operator threads sleep rather than spin, which keeps the speed on a machine
    that other work shares.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = threads or 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """Preprocessed images (batch, 3, S, S) -> grid (batch, regions, C), pooled (batch, C)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.session = session(path, threads)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid, pooled = self.session.run(["grid", "pooled"], {"images": np.ascontiguousarray(pixels, np.float32)})
        return grid, pooled


@dataclass
class OnnxState:
    """The decoder state as named arrays, and the image of each row (to know when memory must move)."""

    tensors: dict[str, np.ndarray]
    images: np.ndarray  # (rows,) int64


class OnnxStepper:
    """The step interface of :mod:`imgsum.decoding` over a bundle's start and step graphs."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.start_session = session(bundle.path(bundle.start), threads)
        self.step_session = session(bundle.path(bundle.step), threads)
        self.carried, self.memory = bundle.carried, bundle.memory
        self.max_positions = bundle.max_positions
        self._start_outputs = ["logits", *self.carried, *self.memory]
        self._step_outputs = ["logits", *(f"{n}.next" for n in self.carried)]
        self._step_inputs = [i.name for i in self.step_session.get_inputs()]

    def start(self, grid: np.ndarray, pooled: np.ndarray) -> tuple[np.ndarray, OnnxState]:
        grid = np.ascontiguousarray(grid, np.float32)
        pooled = np.ascontiguousarray(pooled, np.float32)
        logits, *state = self.start_session.run(self._start_outputs, {"grid": grid, "pooled": pooled})
        return logits, OnnxState(dict(zip(self._start_outputs[1:], state)), np.arange(len(logits)))

    def step(self, tokens: np.ndarray, state: OnnxState) -> tuple[np.ndarray, OnnxState]:
        if self.max_positions is not None and int(state.tensors["position"][0]) >= self.max_positions:
            raise ValueError(f"caption longer than the model's {self.max_positions} positions")
        feeds = {n: state.tensors[n] for n in self._step_inputs if n != "tokens"}
        feeds["tokens"] = np.ascontiguousarray(tokens, np.int64)
        logits, *carried = self.step_session.run(self._step_outputs, feeds)
        return logits, OnnxState({**state.tensors, **dict(zip(self.carried, carried))}, state.images)

    def reorder(self, state: OnnxState, index: np.ndarray) -> OnnxState:
        images = state.images[index]
        # Memory is a function of the image alone: rows that keep their image keep their memory (beam steps).
        same = len(images) == len(state.images) and bool((images == state.images).all())
        tensors = {n: v if same and n in self.memory else v[index] for n, v in state.tensors.items()}
        return OnnxState(tensors, images)

    def concepts(self, state: OnnxState) -> tuple[np.ndarray, np.ndarray]:
        return state.tensors["concept_ids"], state.tensors["concept_p"]


class OnnxCaptionModel:
    """A bundle, loaded: ``generate`` turns preprocessed images into captions with no torch."""

    def __init__(self, bundle: Bundle, threads: int | None = None, float_encoder: bool = False) -> None:
        """``float_encoder``: read photos with the float encoder an int8 one was quantised from (as torch does)."""
        bundle.verify()
        self.bundle = bundle
        self._encoder_file = bundle.float_encoder if float_encoder else bundle.encoder
        self.info = bundle.info
        self.vocab = Vocabulary.from_list(self.info.vocab)
        # Threads per operator: the encoder's one each, since image workers run several encodings at once
        # (``encode``); the decoder, which runs alone in its thread, and the encoder of a single image
        # (``generate``) use every core. Measured on 2 cores, lstm beam 3: one photo 19 -> 14 ms, batch
        # throughput unchanged (155 images/s).
        self._threads, self._wide = threads, threads or os.cpu_count() or 1
        self.stepper = OnnxStepper(bundle, self._wide)
        self._encoders: dict[int | None, OnnxEncoder] = {}  # by threads per operator, each made on first use
        self._encoders_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> "OnnxCaptionModel":
        return cls(read_bundle(path), threads)

    def generate(self, pixels: np.ndarray, **overrides) -> list[Caption]:
        """Preprocessed photos (photos x views, 3, H, W) -> one caption each. ``overrides``: as :meth:`describe`."""
        return self.describe(*self.encode_wide(pixels), **overrides)

    def encode_wide(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` with the encoder on every core, for a caller with no image workers beside it."""
        return self._features(self._wide, pixels)

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed photos (photos x views, 3, H, W) -> grid (photos, regions, C), pooled (photos, C).
        Thread-safe."""
        return self._features(self._threads, pixels)

    def _features(self, threads: int | None, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each photo's grid and pooled features from its views' rows, by the encoder with ``threads``."""
        return self.info.preprocess.per_photo(*self._encoder(threads)(pixels))

    def _encoder(self, threads: int | None) -> OnnxEncoder:
        """The encoder session with ``threads`` per operator, made when first needed (so an ensemble's members
        after the first, which never encode, load none)."""
        with self._encoders_lock:
            if threads not in self._encoders:
                self._encoders[threads] = OnnxEncoder(self.bundle.path(self._encoder_file), threads)
            return self._encoders[threads]

    def describe(self, grid: np.ndarray, pooled: np.ndarray, **overrides) -> list[Caption]:
        """Encoder features, grid (batch, regions, C) and pooled (batch, C) -> one caption each; ``overrides``
        change the model's own :class:`~imgsum.decoding.DecodingOptions` (``beam=5``; None keeps the model's)."""
        return search_captions(self.stepper, grid, pooled, self.vocab, self.info.decoding.with_overrides(**overrides),
                               self.info.concepts)
