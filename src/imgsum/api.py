"""The Python API: ``Captioner.load("gpt").caption("photo.jpg")``."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .images import ImageError, ImageInput, open_image

logger = logging.getLogger(__name__)


@dataclass
class CaptionResult:
    """One image's outcome: a caption, or the error that kept it from being captioned."""

    image: str
    caption: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _label(source: ImageInput, i: int) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<image {i}>"


class Captioner:
    """A loaded model, ready to caption. Load once, caption many times."""

    def __init__(self, model, name: str) -> None:
        self.model = model
        self.name = name
        self.info = model.info

    @classmethod
    def load(cls, model: str | Path = "default", threads: int | None = None) -> "Captioner":
        """A shipped model by name (``default``, ``gpt``, ``lstm``) or a checkpoint file."""
        import torch

        from .models.captioner import CaptionModel
        from .pretrained import resolve_model

        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        return cls(CaptionModel.from_checkpoint(path), str(model))

    def caption(self, image: ImageInput, beam: int | None = None) -> str:
        """One image (path, bytes, PIL image or array) -> its caption. Raises ImageError if unreadable."""
        size = self.info.preprocess.size
        return self.model.generate(self.info_preprocess([open_image(image, draft_size=size)]), beam=beam)[0]

    def info_preprocess(self, images: list) -> "object":
        return self.model.encoder.preprocess(images)

    def caption_batch(self, images: Sequence[ImageInput], beam: int | None = None, batch_size: int = 16,
                      workers: int = 2, on_result: Callable[[CaptionResult], None] | None = None) -> list[CaptionResult]:
        """Captions many images; an unreadable one gets an error result and the rest are still captioned.

        Images are decoded by a pool of ``workers`` threads while the model runs on the previous batch.
        """
        results: list[CaptionResult] = []
        for batch in self._batches(images, batch_size, workers):
            good = [(r, im) for r, im in batch if isinstance(im, object) and r.error is None]
            if good:
                captions = self.model.generate(self.info_preprocess([im for _, im in good]), beam=beam)
                for (r, _), c in zip(good, captions):
                    r.caption = c
            for r, _ in batch:
                results.append(r)
                if on_result:
                    on_result(r)
        return results

    def _batches(self, images: Sequence[ImageInput], batch_size: int, workers: int) -> Iterator[list]:
        size = self.info.preprocess.size

        def load(i: int, source: ImageInput):
            result = CaptionResult(_label(source, i))
            try:
                return result, open_image(source, draft_size=size)
            except ImageError as err:
                result.error = str(err)
                return result, None

        with ThreadPoolExecutor(max(1, workers)) as pool:
            futures: list[Future] = [pool.submit(load, i, s) for i, s in enumerate(images)]
            for lo in range(0, len(futures), batch_size):
                yield [f.result() for f in futures[lo : lo + batch_size]]
