"""The torch-free inference path: exported models (ONNX files and a manifest) run with ONNX Runtime.

Nothing under this package imports torch; ``imgsum export`` (:mod:`imgsum.export`) makes what it runs.
"""

from __future__ import annotations

from .bundle import Bundle, read_bundle
from .info import ModelInfo, read_checkpoint_info

__all__ = ["Bundle", "ModelInfo", "OnnxCaptionModel", "OnnxStepper", "read_bundle", "read_checkpoint_info"]


def __getattr__(name: str):
    # Lazy: reading manifests and metadata needs no onnxruntime.
    if name in ("OnnxCaptionModel", "OnnxStepper", "OnnxEncoder"):
        from . import ort

        return getattr(ort, name)
    raise AttributeError(name)
