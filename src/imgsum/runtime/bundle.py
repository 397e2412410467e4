"""An exported model ("bundle"): ONNX files plus a JSON manifest that names them and carries the
checkpoint's metadata. ``imgsum export`` writes bundles; :mod:`imgsum.runtime.ort` runs them.

A bundle named ``gpt`` in a folder::

    gpt.json                 manifest: format, ModelInfo, file names, state names, checksums
    efficientnet_lite0.onnx  encoder: images (batch, 3, S, S) -> grid (batch, regions, C), pooled (batch, C);
                             shared by every bundle of the folder made with that encoder
    gpt.start.onnx           grid, pooled -> logits (batch, vocab), then the carried and memory state
    gpt.step.onnx            tokens (batch,), carried state, memory state -> logits, then ``NAME.next``
                             for each carried state tensor
    gpt.weights              the weights of both decoder graphs, each stored once (ONNX external data)

A bundle exported with ``--int8-encoder`` names ``efficientnet_lite0.int8.onnx`` as its encoder instead, and
the float file it was quantised from in ``source`` (:mod:`imgsum.quantize`).

*Carried* state changes every step (the LSTM's h and c; the transformer's position and key/value
cache, which grows along its time axis); *memory* is computed once per image (the attention
memory over the grid) and read by every step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_text_atomic
from ..model_info import ModelInfo

BUNDLE_FORMAT = "imgsum-onnx"
BUNDLE_VERSION = 1
MANIFEST_SUFFIX = ".json"


@dataclass
class Bundle:
    """A parsed manifest; file names are resolved against ``folder``."""

    name: str
    folder: Path
    info: ModelInfo
    encoder: str  # file names, relative to folder
    start: str
    step: str
    carried: list[str]
    memory: list[str]
    max_positions: int | None = None  # the transformer's position limit, if any
    files: dict[str, dict] = field(default_factory=dict)  # file -> {"bytes": n, "sha256": hex}
    source: dict = field(default_factory=dict)  # what it was exported from, and with what

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.name}{MANIFEST_SUFFIX}"

    def path(self, file: str) -> Path:
        return self.folder / file

    @property
    def float_encoder(self) -> str:
        """The float encoder's file: the encoder itself, or the one an int8 encoder was quantised from
        (:mod:`imgsum.quantize`), which torch's encoder computes alike."""
        return self.source.get("int8_encoder", {}).get("float", self.encoder)

    @property
    def int8_encoder(self) -> bool:
        """Whether the encoder is an int8 copy of :attr:`float_encoder`."""
        return self.encoder != self.float_encoder

    def to_dict(self) -> dict:
        return {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "name": self.name,
            "info": self.info.to_dict(),
            "encoder": self.encoder,
            "decoder": {"start": self.start, "step": self.step, "carried": self.carried, "memory": self.memory,
                        "max_positions": self.max_positions},
            "files": self.files,
            "source": self.source,
        }

    def save(self) -> Path:
        write_text_atomic(self.manifest, json.dumps(self.to_dict(), indent=1) + "\n")
        return self.manifest

    def verify(self, checksums: bool = False) -> None:
        """Raises if a file is missing or its size (and, with ``checksums``, its SHA-256) is not the recorded one."""
        for file, meta in self.files.items():
            p = self.path(file)
            if not p.is_file():
                raise FileNotFoundError(f"bundle {self.manifest}: {file} is missing")
            if p.stat().st_size != meta["bytes"] or (checksums and sha256(p) != meta["sha256"]):
                raise ValueError(f"bundle {self.manifest}: {file} is not the file it was exported with")

    def total_bytes(self, shared: bool = True) -> int:
        """The size of the model's files; with ``shared``, the encoder's (shared between models) too."""
        return sum(m["bytes"] for f, m in self.files.items() if shared or f != self.encoder)


def read_bundle(path: str | Path) -> Bundle:
    """A manifest file, or a folder holding exactly one."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob(f"*{MANIFEST_SUFFIX}") if is_manifest(p))
        if len(found) != 1:
            raise ValueError(f"{path}: expected one exported model (a {BUNDLE_FORMAT} manifest), found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    d = json.loads(path.read_text())
    if d.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path}: not an imgsum ONNX manifest")
    if d.get("format_version") != BUNDLE_VERSION:
        raise ValueError(f"{path}: ONNX bundle version {d.get('format_version')!r}; this imgsum reads {BUNDLE_VERSION}")
    dec = d["decoder"]
    return Bundle(name=d["name"], folder=path.parent, info=ModelInfo.from_dict(d["info"]), encoder=d["encoder"],
                  start=dec["start"], step=dec["step"], carried=list(dec["carried"]), memory=list(dec["memory"]),
                  max_positions=dec.get("max_positions"), files=d.get("files", {}), source=d.get("source", {}))


def is_manifest(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return BUNDLE_FORMAT.encode() in f.read(256)
    except OSError:
        return False


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
