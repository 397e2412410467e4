"""Reading real-world photos (any source, any mode, EXIF orientation, refusal of absurd sizes) and
turning them into the encoder's input. Needs no deep-learning framework: the ONNX runtime path and
the torch path both preprocess here.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, TypeVar, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]
T = TypeVar("T")  # a numpy array or a torch tensor

#: Images with more pixels than this are refused before they are decoded (about 12k x 8k).
MAX_PIXELS = 100_000_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class ImageError(ValueError):
    """An input that cannot be used as an image; the message says why."""


def open_image(source: ImageInput, draft_size: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Returns an upright 8-bit RGB image from a path, encoded bytes, a PIL image or an array.

    ``draft_size`` lets JPEG decoding (of a path or bytes) scale down by a power of two, as it decodes,
    while staying at least that large: a 12-megapixel photo decodes about 2.5 times faster for 224.
    """
    if isinstance(source, Image.Image):
        image = source  # the caller's image: never changed in place
    elif isinstance(source, np.ndarray):
        return _from_array(source)
    else:
        image = _open_encoded(source)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height} pixels, more than the limit of {max_pixels:,}")
    if draft_size and image is not source and image.format in ("JPEG", "MPO"):  # MPO: the JPEGs of many phones
        image.draft("RGB", (draft_size, draft_size))
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data surfaces on load
        raise ImageError(f"cannot decode image: {err}") from err


def _open_encoded(source: str | os.PathLike | bytes) -> Image.Image:
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
            return Image.open(fp)
    except FileNotFoundError as err:
        raise ImageError(f"{name}: no such file") from err
    except IsADirectoryError as err:
        raise ImageError(f"{name}: is a directory") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{name}: not a readable image file") from err
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name}: image too large ({err})") from err
    except OSError as err:
        raise ImageError(f"{name}: {err}") from err


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to RGB: alpha over white, 16-bit and float scaled, CMYK and palette mapped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        return _from_array(values)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    """An array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), of any numeric type, as an RGB image."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"array of shape {array.shape} is not an image (want HxW, HxWx3 or HxWx4)")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ImageError(f"array image of {array.shape[1]}x{array.shape[0]} pixels is over the limit")
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        top = 1.0 if array.max(initial=0) <= 1.0 else (255.0 if array.max() <= 255 else 65535.0)
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(array))


def find_images(inputs: list[str]) -> list[str]:
    """Expands files, folders (recursively, image suffixes only) and glob patterns, keeping order."""
    import glob

    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif not path.exists() and glob.has_magic(item):
            found += sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
        else:
            found.append(item)  # a missing file is kept, so that it is reported, not dropped
    return found


@dataclass(frozen=True)
class Preprocess:
    """Bring a photo to ``size`` x ``size`` (bilinear), then ``(pixel - mean) / std`` on 0-255 RGB values.

    The grid always reads the whole photo stretched to the square, as the decoders were trained. With
    ``concept_crop``, the ImageNet classifier, whose classes give the visual concepts, reads a second view: the
    photo's centre square, as ImageNet classifiers are evaluated. Each photo is then ``views`` (2) rows of the
    encoder's input, the whole photo's first, and :meth:`per_photo` takes each photo's features from its rows.

    Travels with every checkpoint and exported model: the encoder's input, never re-typed at call sites.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    concept_crop: bool = False

    @property
    def views(self) -> int:
        """Rows of the encoder's input for each photo."""
        return 2 if self.concept_crop else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(int(d["size"]), tuple(d["mean"]), tuple(d["std"]),  # type: ignore[arg-type]
                   bool(d.get("concept_crop", False)))

    def reduce(self, image: Image.Image) -> Image.Image:
        """The smallest picture the views are made from, giving the same views as the photo itself: the square,
        or with ``concept_crop`` the photo with its shorter side brought down to ``size``. For the web server,
        so that what waits for the model is small."""
        if not self.concept_crop:
            return self._stretched(image)
        scale = self.size / min(image.size)
        if scale >= 1:
            return image
        width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
        return image.resize((width, height), Image.BILINEAR)

    def squares(self, image: Image.Image) -> list[Image.Image]:
        """The ``size`` x ``size`` pictures the encoder reads of one photo: the whole photo, then the centre square."""
        image = self.reduce(image)
        if not self.concept_crop:
            return [image]
        side = min(image.size)
        left, top = (image.width - side) / 2, (image.height - side) / 2
        centre = image.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + side, top + side))
        return [self._stretched(image), centre]

    def _stretched(self, image: Image.Image) -> Image.Image:
        """The whole photo stretched to the square (a photo of that size as it is)."""
        square = (self.size, self.size)
        return image if image.size == square else image.resize(square, Image.BILINEAR)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One RGB PIL image -> float32 array (views, 3, size, size)."""
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return np.stack([(np.asarray(square, np.float32).transpose(2, 0, 1) - mean) / std
                         for square in self.squares(image)])

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images -> float32 array (images x views, 3, size, size), each photo's views together."""
        batch = np.empty((len(images) * self.views, 3, self.size, self.size), dtype=np.float32)
        for i, image in enumerate(images):
            batch[i * self.views : (i + 1) * self.views] = self.pixels(image)
        return batch

    def load(self, source: ImageInput) -> np.ndarray:
        """Any image input -> (views, 3, size, size): decoded at the smallest JPEG draft size that suffices."""
        return self.pixels(open_image(source, draft_size=self.size))

    def per_photo(self, grid: T, pooled: T) -> tuple[T, T]:
        """The encoder's outputs for ``views`` rows a photo -> one grid (the whole photo's) and one pooled vector (the
        classifier's view's) a photo. Pooled features serve only the concepts."""
        if self.views == 1:
            return grid, pooled
        return grid[0 :: self.views], pooled[self.views - 1 :: self.views]
