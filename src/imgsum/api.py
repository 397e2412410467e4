"""The Python API: ``Captioner.load("gpt").caption("photo.jpg")``.

Captioning runs on ONNX Runtime by default, with no torch; ``backend="torch"`` runs the checkpoint
with PyTorch instead (training installs, or models not yet exported).
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .concepts import Concept
from .decoding import Caption
from .images import ImageError, ImageInput
from .pretrained import is_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class CaptionResult:
    """One image's outcome: a caption, or the error that kept it from being captioned."""

    image: str
    caption: str | None = None
    error: str | None = None
    concepts: list[Concept] = field(default_factory=list)  # what the model saw, most probable first

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_row(self) -> dict:
        """The result as one output row, the same for every writer (``imgsum caption --format jsonl``, the Ray
        engine's part files): ``{"image", "caption", "concepts": [{"word", "p"}, ...]}``, or ``{"image", "error"}``."""
        if not self.ok:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "caption": self.caption, "concepts": [c.to_dict() for c in self.concepts]}


def _label(source: ImageInput, i: int) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<image {i}>"


class BackendUnavailable(ImportError):
    """The asked-for backend's packages are not installed; the message says what to install."""


def load_model(path: Path, backend: str, threads: int | None = None):
    """One model file for ``backend``: an ONNX manifest (or its folder) for ``onnx``, a checkpoint for ``torch``."""
    if backend == "onnx":
        if is_checkpoint(path):
            raise ValueError(f"{path} is a checkpoint: export it for ONNX Runtime first "
                             f"(imgsum export {path} --out FOLDER), or use the torch backend")
        try:
            from .runtime.ort import OnnxCaptionModel
        except ImportError as err:
            raise BackendUnavailable(f"the onnx backend needs onnxruntime ({err}): pip install onnxruntime") from err
        return OnnxCaptionModel.load(path, threads=threads)
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailable("the torch backend needs PyTorch, which is not installed: "
                                 "pip install 'imgsum[train]'") from err
    if not is_checkpoint(path):
        raise ValueError(f"the torch backend loads checkpoints (.safetensors); {path} is not one")
    from .models.captioner import CaptionModel

    if threads:
        torch.set_num_threads(threads)
    return CaptionModel.from_checkpoint(path)


class Captioner:
    """A loaded model, ready to caption. Load once, caption many times.

    ``model`` is anything with ``info`` (its :class:`~imgsum.model_info.ModelInfo`),
    ``encode(pixels)`` (preprocessed images -> encoder features), ``describe(grid, pooled, **overrides)``
    (features -> captions) and ``generate`` (the two in one): an
    :class:`~imgsum.runtime.ort.OnnxCaptionModel` (ONNX Runtime, no torch), a
    :class:`~imgsum.models.captioner.CaptionModel` (torch) or an :class:`~imgsum.ensemble.EnsembleModel` of
    either.
    """

    def __init__(self, model, name: str, backend: str = "onnx", path: Path | None = None) -> None:
        self.model = model
        self.name = name
        self.backend = backend
        self.path = path  # the file it was loaded from
        self.info = model.info
        self.preprocess = model.info.preprocess

    @classmethod
    def load(cls, model: str | Path = "default", backend: str | None = None, threads: int | None = None) -> "Captioner":
        """A shipped model by name (``default``, ``ensemble``, ``gpt``, ``lstm``), an exported model (its ``.json``
        manifest or folder), an ensemble manifest or a checkpoint file (``.safetensors``).

        ``backend``: ``onnx`` (ONNX Runtime; the default, except for a checkpoint file) or ``torch``
        (needs ``pip install 'imgsum[train]'``). ``threads`` caps the CPU threads of the model.
        """
        from .ensemble import EnsembleModel, is_ensemble, read_ensemble
        from .pretrained import BACKENDS, is_shipped, resolve_model

        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if backend is None:
            backend = "torch" if not is_shipped(model) and is_checkpoint(Path(model)) else "onnx"
        path = resolve_model(model, backend)
        if is_ensemble(path):
            loaded = EnsembleModel.load(read_ensemble(path), backend, lambda p: load_model(p, backend, threads))
        else:
            loaded = load_model(path, backend, threads)
        return cls(loaded, str(model), backend, path)

    def caption(self, image: ImageInput, **overrides) -> str:
        """One image (path, bytes, PIL image or array) -> its caption. Raises ImageError if unreadable.
        :meth:`describe` gives the concepts too.

        ``overrides`` change the model's own :class:`~imgsum.decoding.DecodingOptions` (``beam=5``; None keeps
        the model's)."""
        return self.describe(image, **overrides).text

    def describe(self, image: ImageInput, **overrides) -> Caption:
        """One image -> its caption and the visual concepts the model saw in it (``.text``, ``.concepts``)."""
        return self.model.generate(self.preprocess.load(image), **overrides)[0]

    def caption_batch(self, images: Iterable[ImageInput], batch_size: int = 16, workers: int = 2,
                      on_result: Callable[[CaptionResult], None] | None = None, **overrides) -> list[CaptionResult]:
        """Captions many images; an unreadable one gets an error result and the rest are still captioned.
        ``overrides``: as :meth:`caption`.

        A pool of ``workers`` threads reads, preprocesses and encodes the next images while this thread
        decodes the captions of a batch: decoding and the encoder run side by side, on separate cores.
        """
        self.info.decoding.with_overrides(**overrides)  # an unknown option fails here, before any work
        results: list[CaptionResult] = []
        for batch in self._batches(images, batch_size, workers):
            good = [features for r, features in batch if r.error is None]
            if good:
                grid = np.concatenate([g for g, _ in good])  # (batch, regions, C)
                pooled = np.concatenate([p for _, p in good])  # (batch, C)
                captions = iter(self.model.describe(grid, pooled, **overrides))
                for r, _ in batch:
                    if r.error is None:
                        made = next(captions)
                        r.caption, r.concepts = made.text, made.concepts
            for r, _ in batch:
                results.append(r)
                if on_result:
                    on_result(r)
        return results

    def _batches(self, images: Iterable[ImageInput], batch_size: int, workers: int) -> Iterator[list]:
        """Batches of (result, encoder features or None), made at most two batches ahead of the decoder."""
        load, encode = self.preprocess.load, self.model.encode

        def job(i: int, source: ImageInput) -> tuple[CaptionResult, tuple[np.ndarray, np.ndarray] | None]:
            result = CaptionResult(_label(source, i))
            try:
                pixels = load(source)  # (views, 3, S, S): one photo
            except (ImageError, OSError, ValueError) as err:
                result.error = str(err)
                return result, None
            return result, encode(pixels)

        sources = enumerate(images)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            pending: deque[Future] = deque()

            def fill() -> None:
                while len(pending) < 2 * batch_size:
                    item = next(sources, None)
                    if item is None:
                        return
                    pending.append(pool.submit(job, *item))

            fill()
            batch: list = []
            while pending:
                batch.append(pending.popleft().result())
                fill()
                if len(batch) == batch_size or not pending:
                    yield batch
                    batch = []
