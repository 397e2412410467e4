"""imgsum: give it a photo, it answers with one English sentence that says what is in it."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Captioner", "CaptionResult", "ImageError", "__version__"]


def __getattr__(name: str):
    # Lazy, so that ``import imgsum`` stays cheap and pulls in no model code until it is used.
    if name in ("Captioner", "CaptionResult"):
        from . import api

        return getattr(api, name)
    if name == "ImageError":
        from .images import ImageError

        return ImageError
    raise AttributeError(name)
