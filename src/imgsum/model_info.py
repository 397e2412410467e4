"""A model's description, read without torch: decoder hyper-parameters, vocabulary, preprocessing,
decoding defaults, training provenance and metrics.

The same JSON is inside every checkpoint (safetensors metadata) and beside every exported ONNX
model (its manifest), so both forms of a model describe themselves alike. Training, checkpoints,
export, both backends, the API and the server all read it from here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .decoding import DecodingOptions
from .images import Preprocess

FORMAT_VERSION = 2  # 2: concept slots (the vocabulary's slot tokens, the decoders' concept head)
META_KEY = "imgsum"


@dataclass
class DecoderConfig:
    """Hyper-parameters stored in every checkpoint; ``DecoderConfig(**saved)`` rebuilds the model."""

    kind: str = "gpt"
    vocab_size: int = 0
    feature_dim: int = 1280  # encoder channels
    dim: int = 384  # word-embedding size; the image is projected to it
    hidden: int = 512  # lstm: state size
    attention_dim: int = 256  # lstm: additive-attention size
    layers: int = 3  # gpt: transformer blocks
    heads: int = 6  # gpt
    mlp_ratio: int = 4  # gpt
    max_len: int = 40  # gpt: positions (image token included)
    dropout: float = 0.3
    slots: int = 5  # concept slots: the most probable concept words an image's caption may say by pointing
    concepts: int = 0  # concept words (0 pads); ``concept_layers.concept_sizes`` gives these four
    nodes: int = 0  # WordNet nodes above the concept words (0 pads)
    depth: int = 0  # most ancestors of a concept word
    classes: int = 1000  # the encoder's classifier (ImageNet)
    memory_layers: int = 0  # self-attention layers over the memory (regions and concept slots) before decoding
    memory_scope: str = "all"  # what the memory layers rewrite: "all" rows, or the "regions" (the concept slots kept)
    regions: int = 0  # grid regions, each given a learned position in the memory (with ``memory_layers``)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelInfo:
    encoder: str
    preprocess: Preprocess
    decoder: DecoderConfig
    vocab: list[str]
    concepts: list[list[str]] = field(default_factory=list)  # (word, plural) by concept id: what slot tokens say
    decoding: DecodingOptions = field(default_factory=DecodingOptions)  # stored as a dict of its fields
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.decoding, dict):
            self.decoding = DecodingOptions.from_dict(self.decoding)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "ModelInfo":
        d = dict(d)
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"model format version {version!r}; this imgsum reads version {FORMAT_VERSION}")
        d["preprocess"] = Preprocess.from_dict(d["preprocess"])
        d["decoder"] = DecoderConfig(**d["decoder"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        return cls.from_dict(json.loads(text))


def read_checkpoint_info(path: str | Path) -> ModelInfo:
    """A checkpoint's metadata from its safetensors header alone: no torch, no weights read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(8)
        (size,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
        if not 2 <= size <= 100_000_000:
            raise ValueError(f"{path}: not a safetensors file")
        header = json.loads(f.read(size))
    return info_from_metadata(header.get("__metadata__"), path)


def info_from_metadata(meta: dict | None, path: str | Path) -> ModelInfo:
    """The ModelInfo in a safetensors file's ``__metadata__`` (``path`` names the file in errors)."""
    if not meta or META_KEY not in meta:
        raise ValueError(f"{path}: not an imgsum checkpoint (no {META_KEY!r} metadata)")
    return ModelInfo.from_json(meta[META_KEY])
