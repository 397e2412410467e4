"""``imgsum export --int8-encoder``: an exported model's encoder, quantised to int8 for ONNX Runtime.

The encoder is most of the fast ``lstm``'s time per photo in batch (its decoder is small), and an int8
copy of it runs in well under half the float one's time on a CPU. ONNX Runtime's own static quantiser
makes it: per-channel int8 weights, uint8 activations whose ranges are calibrated on real photos, in
QDQ form. The bundle's manifest then names the int8 file as its encoder and records the float file it
came from (:attr:`imgsum.runtime.bundle.Bundle.float_encoder`), which stays beside it: the torch
backend and the ONNX-against-torch checks use the float encoder. The int8 features are close to the
float ones, not equal, so a few captions differ between the two; ``docs/experiments.md`` has the
measured cost.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .data.formats import load_captions
from .images import ImageError, Preprocess, find_images
from .runtime.bundle import Bundle, sha256

logger = logging.getLogger(__name__)

#: The int8 encoder's pooled features must point where the float encoder's do, photo by photo, at least this
#: closely (cosine similarity); measured on the shipped encoder, 0.99 and above.
MIN_COSINE = 0.95
INT8_SUFFIX = ".int8.onnx"


class QuantizationError(ValueError):
    """The int8 encoder does not compute close enough to the float one."""


def calibration_photos(source: str | Path, count: int) -> list[Path]:
    """The first ``count`` photos (by name) of a folder, or of a caption file's training split (all its
    images where it has no splits)."""
    source = Path(source)
    if source.is_dir():
        photos = [Path(p) for p in find_images([str(source)])]
    else:
        data = load_captions(source)
        if data.image_dir is None:
            raise ValueError(f"{source}: no image folder beside the caption file")
        names = data.splits.get("train") or list(data.captions)
        photos = [data.image_dir / n for n in sorted(names)]
    if not photos:
        raise ValueError(f"{source}: no photos to calibrate the int8 encoder on")
    return photos[:count]


def quantize_bundle(bundle: Bundle, photos: list[Path], batch_size: int = 8) -> Bundle:
    """Writes ``ENCODER.int8.onnx`` beside the bundle's float encoder, checks it against the float one on
    ``photos``, and points the bundle's manifest at it. Returns the saved bundle."""
    float_file = bundle.float_encoder
    int8_file = Path(float_file).stem + INT8_SUFFIX
    preprocess = bundle.info.preprocess
    pixels = _load(photos, preprocess)  # each photo's views (rows) calibrate it
    calibrated = len(pixels) // preprocess.views
    logger.info("int8 encoder: calibrating %s on %d photos", float_file, calibrated)
    quantize_encoder(bundle.path(float_file), bundle.path(int8_file), pixels, batch_size)
    try:
        check_close(bundle.path(float_file), bundle.path(int8_file), pixels)
    except QuantizationError:
        bundle.path(int8_file).unlink()  # refused: no int8 file is left beside the untouched manifest
        raise
    bundle.encoder = int8_file
    bundle.files = {f: m for f, m in bundle.files.items() if f != float_file}
    bundle.files[int8_file] = {"bytes": bundle.path(int8_file).stat().st_size,
                               "sha256": sha256(bundle.path(int8_file))}
    bundle.source["int8_encoder"] = {
        "float": float_file, "float_sha256": sha256(bundle.path(float_file)),
        "calibration_photos": calibrated, "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, "
        "uint8 activations, min-max calibration"}
    bundle.save()
    logger.info("int8 encoder: %s (%.1f MB; float %.1f MB)", bundle.path(int8_file),
                bundle.path(int8_file).stat().st_size / 1e6, bundle.path(float_file).stat().st_size / 1e6)
    return bundle


def quantize_encoder(float_path: Path, int8_path: Path, pixels: np.ndarray, batch_size: int = 8) -> None:
    """Static int8 quantisation of an encoder graph (input ``images``), calibrated on preprocessed ``pixels``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(np.array_split(pixels, max(1, len(pixels) // batch_size)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"images": batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        written = Path(tmp) / int8_path.name
        quantize_static(str(prepared), str(written), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        written.replace(int8_path)


def check_close(float_path: Path, int8_path: Path, pixels: np.ndarray) -> float:
    """The smallest cosine similarity, photo by photo, of the two encoders' pooled features; raises
    :class:`QuantizationError` under :data:`MIN_COSINE`."""
    from .runtime.ort import OnnxEncoder

    cosine = pooled_cosine(OnnxEncoder(float_path)(pixels)[1], OnnxEncoder(int8_path)(pixels)[1])
    worst = float(cosine.min())
    logger.info("int8 encoder: pooled features' cosine similarity to the float encoder's: min %.4f, mean %.4f",
                worst, float(cosine.mean()))
    if worst < MIN_COSINE:
        raise QuantizationError(f"the int8 encoder's features are too far from the float encoder's "
                                f"(cosine {worst:.3f} < {MIN_COSINE})")
    return worst


def pooled_cosine(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine similarity of two encoders' pooled features (batch, C), photo by photo."""
    return (want * got).sum(1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)


def _load(photos: list[Path], preprocess: Preprocess) -> np.ndarray:
    """The photos, preprocessed; an unreadable one is logged and left out."""
    pixels = []
    for photo in photos:
        try:
            pixels.append(preprocess.load(photo))
        except ImageError as err:
            logger.warning("int8 encoder: calibration photo left out: %s", err)
    if not pixels:
        raise ValueError("none of the calibration photos could be read")
    return np.concatenate(pixels).astype(np.float32)
