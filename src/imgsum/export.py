"""``imgsum export``: a checkpoint -> a bundle of ONNX files that ONNX Runtime runs without torch.

The encoder, the decoder's ``start`` and its ``step`` (see :mod:`imgsum.models.decoders`) are each
exported with ``torch.onnx`` (dynamo), with a dynamic batch and, for the transformer's key/value
cache, a dynamic time axis. The two decoder graphs share one weights file in which each tensor is
stored once, as fp16 where that is exact (a checkpoint's weights are fp16, so for them it always
is); ONNX Runtime computes in fp32, as torch does. Every export is checked against torch before its
manifest is written. The layout is described in :mod:`imgsum.runtime.bundle`.

Regenerate the shipped bundles from the shipped checkpoints with::

    imgsum export gpt --out src/imgsum/pretrained
    imgsum export lstm --out src/imgsum/pretrained --int8-encoder ../shared/data/flickr8k/Flickr8k.token.txt

(the fast ``lstm`` reads photos with an int8 copy of the encoder on ONNX Runtime: :mod:`imgsum.quantize`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from pathlib import Path
import numpy as np
import torch
from torch import nn

from .images import Preprocess
from .models.captioner import CaptionModel
from .models.decoders import Decoder
from .models.encoders import Encoder
from .runtime.bundle import Bundle, sha256

logger = logging.getLogger(__name__)

#: Logits (and grid features) must agree with torch within this, relative to their largest magnitude.
TOLERANCE = 1e-4


class ExportError(ValueError):
    """The exported graphs do not compute what the torch model computes."""


def export_checkpoint(checkpoint: str | Path, out: str | Path, name: str | None = None,
                      verify: bool = True) -> Bundle:
    """Writes ``NAME.json``, ``NAME.start.onnx``, ``NAME.step.onnx``, ``NAME.weights`` and the encoder's
    ``ENCODER.onnx`` (kept if one already in ``out`` computes the same) into ``out``."""
    import onnx

    checkpoint = Path(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = name or checkpoint.stem
    model = CaptionModel.from_checkpoint(checkpoint)
    info = model.info
    size = info.preprocess.size

    encoder_file = f"{info.encoder}.onnx"
    probe = _probe_pixels(info.preprocess)
    if not (out / encoder_file).is_file() or not _encoder_matches(model.encoder, out / encoder_file, probe):
        logger.info("export: encoder %s -> %s", info.encoder, out / encoder_file)
        _export_encoder(model.encoder, out / encoder_file, size)

    decoder = model.decoder
    with torch.no_grad():
        grid, pooled = model.encoder(torch.from_numpy(probe))  # (rows, regions, C), (rows, C): 2 photos' views
    carried, memory = _state_roles(decoder, grid, pooled)
    logger.info("export: decoder %s (carried %s; memory %s)", info.decoder.kind, carried, memory)
    start = _export_start(decoder, grid, pooled, carried + memory)
    step = _export_step(decoder, grid, pooled, carried, memory)
    files = {"start": f"{name}.start.onnx", "step": f"{name}.step.onnx", "weights": f"{name}.weights"}
    _store_weights([start, step], out / files["weights"])
    onnx.save(start, out / files["start"])
    onnx.save(step, out / files["step"])

    bundle = Bundle(
        name=name, folder=out, info=info, encoder=encoder_file, start=files["start"], step=files["step"],
        carried=carried, memory=memory,
        max_positions=info.decoder.max_len if info.decoder.kind == "gpt" else None,
        files={f: {"bytes": (out / f).stat().st_size, "sha256": sha256(out / f)}
               for f in (encoder_file, files["start"], files["step"], files["weights"])},
        source={"checkpoint": checkpoint.name, "checkpoint_sha256": sha256(checkpoint), "torch": torch.__version__,
                "onnx_opset": _opset(step)},
    )
    if verify:
        verify_bundle(model, bundle, probe)
    bundle.save()
    own = bundle.total_bytes(shared=False)
    logger.info("export: %s (%.1f MB, and the encoder's %.1f MB)", bundle.manifest, own / 1e6,
                (bundle.total_bytes() - own) / 1e6)
    return bundle


def verify_bundle(model: CaptionModel, bundle: Bundle, pixels: np.ndarray, steps: int = 4) -> None:
    """Runs the bundle with ONNX Runtime beside the torch model; raises :class:`ExportError` on a mismatch."""
    from .runtime.ort import OnnxEncoder, OnnxStepper

    encoder = OnnxEncoder(bundle.path(bundle.encoder))
    with torch.no_grad():
        grid, pooled = model.encoder(torch.from_numpy(pixels))
    _check("encoder grid", encoder(pixels)[0], grid.numpy())
    stepper = OnnxStepper(bundle)
    logits, state = stepper.start(grid.numpy(), pooled.numpy())
    with torch.no_grad():
        ref, ref_state = model.decoder.start(grid, pooled)
        onnx_ids, torch_ids = stepper.concepts(state)[0], ref_state["concept_ids"].numpy()
        if not np.array_equal(onnx_ids, torch_ids):
            raise ExportError(f"the ONNX graphs chose concepts {onnx_ids.tolist()}, torch {torch_ids.tolist()}")
        _check("start logits", logits, ref.numpy())
        for t in range(steps):
            tokens = ref.argmax(-1)
            logits, state = stepper.step(tokens.numpy(), state)
            ref, ref_state = model.decoder.step(tokens, ref_state)
            _check(f"step {t + 1} logits", logits, ref.numpy())


def _check(what: str, got: np.ndarray, want: np.ndarray) -> None:
    err = float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
    logger.debug("export: %s: relative error %.2e", what, err)
    if not err <= TOLERANCE:
        raise ExportError(f"the ONNX {what} differ from torch's by {err:.2e} (relative; tolerance {TOLERANCE})")


def _probe_pixels(preprocess: Preprocess) -> np.ndarray:
    """Two of the shipped sample photos, preprocessed: real photos, so that the concepts the classifier
    head picks are clear winners (on noise, near ties could fall either way in fp32 on two runtimes)."""
    photos = sorted((Path(__file__).parent / "assets" / "samples").glob("*.jpg"))[:2]
    return np.concatenate([preprocess.load(p) for p in photos]).astype(np.float32)


def _export(module: nn.Module, args: tuple, dynamic_shapes, input_names, output_names):
    module.eval()
    with _quiet("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        program = torch.onnx.export(module, args, dynamic_shapes=dynamic_shapes, input_names=input_names,
                                    output_names=output_names, dynamo=True, external_data=False, verbose=False)
    return program.model_proto


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Lowers the named loggers to errors only, and silences Python warnings, for the duration."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    try:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _export_encoder(encoder: Encoder, path: Path, size: int) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=4096)
    proto = _export(encoder, (torch.zeros(2, 3, size, size),), ({0: batch},), ["images"], ["grid", "pooled"])
    onnx.save(proto, path)


def _encoder_matches(encoder: Encoder, path: Path, pixels: np.ndarray) -> bool:
    from .runtime.ort import OnnxEncoder

    try:
        grid = OnnxEncoder(path)(pixels)[0]
    except Exception as err:  # noqa: BLE001 - any unreadable or stale file is simply re-exported
        logger.info("export: %s unusable (%s); exporting it again", path, err)
        return False
    with torch.no_grad():
        want = encoder(torch.from_numpy(pixels))[0].numpy()
    return bool(np.abs(grid - want).max() <= TOLERANCE * max(1.0, float(np.abs(want).max())))


def _state_roles(decoder: Decoder, grid: torch.Tensor, pooled: torch.Tensor) -> tuple[list[str], list[str]]:
    """Splits the state's names into carried (changed by a step) and memory (passed through unchanged)."""
    with torch.no_grad():
        logits, state = decoder.start(grid, pooled)
        _, after = decoder.step(logits.argmax(-1), state)
    memory = [n for n in state if after[n] is state[n]]
    return [n for n in state if n not in memory], memory


class _Start(nn.Module):
    def __init__(self, decoder: Decoder, names: list[str]) -> None:
        super().__init__()
        self.decoder, self.names = decoder, names

    def forward(self, grid, pooled):
        logits, state = self.decoder.start(grid, pooled)
        return (logits, *(state[n] for n in self.names))


class _Step(nn.Module):
    def __init__(self, decoder: Decoder, inputs: list[str], carried: list[str]) -> None:
        super().__init__()
        self.decoder, self.inputs, self.carried = decoder, inputs, carried

    def forward(self, tokens, *states):
        logits, state = self.decoder.traceable_step(tokens, dict(zip(self.inputs, states)))
        return (logits, *(state[n] for n in self.carried))


def _export_start(decoder: Decoder, grid, pooled, names: list[str]):
    batch = torch.export.Dim("batch", min=1, max=4096)
    return _export(_Start(decoder, names), (grid, pooled), ({0: batch}, {0: batch}), ["grid", "pooled"],
                   ["logits", *names])


def _export_step(decoder: Decoder, grid, pooled, carried: list[str], memory: list[str]):
    """Exported from a state one step in, so that no time axis has the length 1 (export would fix it)."""
    with torch.no_grad():
        logits, first = decoder.start(grid, pooled)
        logits, state = decoder.step(logits.argmax(-1), first)
    batch = torch.export.Dim("batch", min=1, max=4096)
    past = torch.export.Dim("past", min=1, max=4096)
    names = carried + memory
    shapes = []
    for n in names:  # the batch is dim 0; a dim that grew over a step is the cache's time axis
        grew = [d for d in range(1, state[n].dim()) if state[n].shape[d] != first[n].shape[d]]
        shapes.append({0: batch, **{d: past for d in grew}})
    tokens = logits.argmax(-1)
    return _export(_Step(decoder, names, carried), (tokens, *(state[n] for n in names)), ({0: batch}, tuple(shapes)),
                   ["tokens", *names], ["logits", *(f"{n}.next" for n in carried)])


def _store_weights(models: list, path: Path, inline_below: int = 1024) -> None:
    """Moves the graphs' weights into one external-data file, each distinct tensor once.

    A float32 tensor whose values are all exact in fp16 is stored as fp16 and cast back by a node; a matrix
    that is the transpose of one already stored (the exporter pre-transposes some weights, e.g. the output
    layer tied to the embedding) is read from it through a Transpose node. ONNX Runtime folds these nodes
    when it loads the graph, so it computes with the very float32 weights of the torch model.
    """
    from onnx import TensorProto, helper, numpy_helper

    def key(array: np.ndarray) -> bytes:
        return hashlib.sha256(str((array.dtype.str, array.shape)).encode() + array.tobytes()).digest()

    stored: dict[bytes, tuple[int, int]] = {}  # content -> (offset, length) in the file
    transposed: dict[bytes, tuple[int, int]] = {}  # content of a stored matrix's transpose -> where that matrix is
    with open(path, "wb") as f:
        for model in models:
            graph = model.graph
            transposes, casts = [], []
            for init in graph.initializer:
                array = numpy_helper.to_array(init)
                if array.nbytes < inline_below:
                    continue
                name = init.name
                if array.dtype == np.float32 and np.array_equal(array.astype(np.float16).astype(np.float32), array):
                    array = array.astype(np.float16)
                    name = f"{init.name}.fp16"
                    casts.append(helper.make_node("Cast", [name], [init.name], to=TensorProto.FLOAT))
                k = key(array)
                if k not in stored and k in transposed:
                    transposes.append(helper.make_node("Transpose", [f"{name}.T"], [name], perm=[1, 0]))
                    array, name, (offset, length) = array.T, f"{name}.T", transposed[k]
                else:
                    if k not in stored:
                        f.write(b"\0" * (-f.tell() % 64))  # aligned, for memory mapping
                        stored[k] = (f.tell(), array.nbytes)
                        f.write(array.tobytes())
                        if array.ndim == 2:
                            transposed[key(np.ascontiguousarray(array.T))] = stored[k]
                    offset, length = stored[k]
                tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype),
                                     dims=array.shape, data_location=TensorProto.EXTERNAL)
                for field, value in (("location", path.name), ("offset", offset), ("length", length)):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = field, str(value)
                init.CopyFrom(tensor)
            nodes = transposes + casts + list(graph.node)
            del graph.node[:]
            graph.node.extend(nodes)


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
