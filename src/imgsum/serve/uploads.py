"""Uploaded bytes -> a checked image: type sniffed from the bytes, size and pixel limits, decoding errors named.

Every refusal is an :class:`ApiError` with the HTTP status that fits it (413, 415, 422), never a 500.
"""

from __future__ import annotations

import io
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable

from PIL import Image, UnidentifiedImageError

from ..images import ImageError, open_image

#: Makes a decoded picture as small as a model's preprocessing allows (``Preprocess.reduce``).
Reduce = Callable[[Image.Image], Image.Image]

#: Formats accepted, as Pillow names them after sniffing the bytes (MPO: a phone's multi-picture JPEG).
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


class ApiError(Exception):
    """A request the server refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Upload:
    """One uploaded image, checked: its bytes and what they are."""

    name: str
    data: bytes
    format: str  # as sniffed by Pillow: JPEG, PNG, ...
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return Image.MIME.get(self.format, "application/octet-stream")


def display_name(name: str | None, index: int = 0) -> str:
    """A client's file name made safe to echo in messages and JSON: its last part, printable, at most 100 chars."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable())[:100]
    return base or f"image {index + 1}"


def sniff(data: bytes, name: str, max_bytes: int, max_pixels: int) -> Upload:
    """Checks the bytes without decoding the pixels: size, type (from the bytes, not the name) and dimensions."""
    if not data:
        raise ApiError(422, f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise ApiError(413, f"{name}: {len(data):,} bytes, more than the limit of {max_bytes:,} bytes per image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is applied below
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ApiError(413, f"{name}: refused as a decompression bomb ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ApiError(415, f"{name}: not an image (its bytes match none of JPEG, PNG, WebP, GIF, BMP, TIFF)") from err
    if image.format not in ACCEPTED_FORMATS:
        raise ApiError(415, f"{name}: {image.format} images are not accepted (JPEG, PNG, WebP, GIF, BMP, TIFF are)")
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(413, f"{name}: {width}x{height} pixels, more than the limit of {max_pixels:,} pixels "
                            "(refused before decoding)")
    return Upload(name, data, image.format, width, height)


def open_picture(upload: Upload, size: int | None = None, max_pixels: int | None = None,
                 reduce: Reduce | None = None) -> Image.Image:
    """The upright RGB picture, decoded at least ``size`` large (JPEGs scale down while decoding).

    ``reduce`` (a model's :meth:`~imgsum.images.Preprocess.reduce`) makes it as small as the model's
    preprocessing allows, so that what waits for the model is small.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = open_image(upload.data, draft_size=size, **({"max_pixels": max_pixels} if max_pixels else {}))
            if reduce:
                image = reduce(image)
            else:
                image.load()
    except ImageError as err:
        raise ApiError(422, f"{upload.name}: cannot decode the image ({_reason(err)})") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ApiError(422, f"{upload.name}: cannot decode the image ({err})") from err
    return image


def _reason(err: ImageError) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith("<bytes>: ") else text


def safe_stem(name: str | None, fallback: str = "image") -> str:
    """A file name's stem reduced to ``[A-Za-z0-9._-]``, at most 60 characters: safe to use inside a folder."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:60].strip("-._")
    return stem or fallback
