"""The torch-free inference path: exported models (ONNX files and a manifest) run with ONNX Runtime.

Nothing under this package imports torch; ``imgsum export`` (:mod:`imgsum.export`) makes what it runs.
"""

from __future__ import annotations

from .bundle import Bundle, read_bundle

__all__ = ["Bundle", "OnnxCaptionModel", "OnnxStepper", "read_bundle"]


def __getattr__(name: str):
    # Lazy: reading manifests needs no onnxruntime.
    if name in ("OnnxCaptionModel", "OnnxStepper", "OnnxEncoder"):
        from . import ort

        return getattr(ort, name)
    raise AttributeError(name)
