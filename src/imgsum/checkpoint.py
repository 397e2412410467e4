"""One checkpoint file: the decoder's weights (safetensors, fp16) and, as JSON metadata, all that is
needed to rebuild and use the model: format version, encoder and preprocessing, decoder
hyper-parameters, vocabulary, decoding defaults, training data and split, dev metrics.

It loads without unpickling code. The encoder's weights are not repeated in it: the encoder
is named, and its pretrained weights come from the encoder registry.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .files import write_atomic
from .model_info import META_KEY, ModelInfo, info_from_metadata


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], info: ModelInfo) -> None:
    """Writes atomically (a temporary file renamed into place): a failure never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, seen = {}, set()
    for name, t in state_dict.items():
        if t.data_ptr() in seen:  # tied weights (output layer = embedding) are stored once
            continue
        seen.add(t.data_ptr())
        tensors[name] = (t.half() if t.is_floating_point() else t).contiguous().cpu()
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: info.to_json()}))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """Weights as float32 tensors, and the metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        info = info_from_metadata(f.metadata(), path)
        state = {k: f.get_tensor(k) for k in f.keys()}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, info
