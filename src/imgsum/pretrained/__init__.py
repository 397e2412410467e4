"""The models that ship inside the package (the release registry), by name.

Each shipped decoder is here in two forms: its checkpoint (``NAME.safetensors``: the torch backend,
fine-tuning) and its export for ONNX Runtime (``NAME.json`` and the files it names, the encoder's
shared between models, and the ``lstm``'s int8 copy of it: the default backend). ``imgsum export`` makes the
second from the first (the commands: README, "Backends"). A shipped ensemble is one manifest (``NAME.json``, written by
``imgsum ensemble``) naming shipped decoders; it serves both backends.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Shipped model names, best first: the first is the default (chosen on the dev sets). Name -> its checkpoint file,
#: or an ensemble's manifest.
SHIPPED: dict[str, str] = {"ensemble": "ensemble.json", "gpt": "gpt.safetensors", "lstm": "lstm.safetensors"}
DEFAULT = "default"
BACKENDS = ("onnx", "torch")


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def _name(name: str) -> str:
    if name == DEFAULT:
        return next(iter(SHIPPED))
    if name not in SHIPPED:
        raise KeyError(name)
    return name


def shipped_path(name: str, backend: str = "torch") -> Path:
    """The file of a shipped model: its checkpoint (torch) or its ONNX manifest (onnx), or an ensemble's manifest
    (both); ``default`` is the first of :data:`SHIPPED`."""
    name = _name(name)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    file = _folder() / SHIPPED[name]
    if backend == "torch" or file.suffix == ".json":  # an ensemble's manifest serves both backends
        return file
    return file.with_suffix(".json")


def is_shipped(name_or_path: str | Path) -> bool:
    return str(name_or_path) == DEFAULT or str(name_or_path) in SHIPPED


def resolve_model(name_or_path: str | Path, backend: str = "torch") -> Path:
    """A shipped name (``default``, ``ensemble``, ``gpt``, ``lstm``) or a path -> the file to load.

    For a shipped name, ``backend`` picks the form: ``torch`` its checkpoint, ``onnx`` its ONNX manifest.
    A path is returned as it is (a checkpoint ``.safetensors``, an ONNX manifest ``.json``, or a folder
    holding one manifest), once it is known to exist.
    """
    if is_shipped(name_or_path):
        path = shipped_path(str(name_or_path), backend)
        if not path.is_file():
            hint = " (make it with imgsum export: README.md, \"Backends\")" if backend == "onnx" else ""
            if SHIPPED[_name(str(name_or_path))].endswith(".json"):
                hint = " (make it with the imgsum ensemble command in README.md)"
            raise FileNotFoundError(f"shipped model {name_or_path!r} is missing from the installation ({path}){hint}")
        return path
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join([DEFAULT, *SHIPPED])
        raise FileNotFoundError(f"{name_or_path!r} is neither a shipped model ({names}) nor a model file")
    return path


def is_checkpoint(path: Path) -> bool:
    """A checkpoint file (torch weights), as opposed to an exported model (ONNX manifest or its folder)."""
    return path.is_file() and path.suffix == ".safetensors"
