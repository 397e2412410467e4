"""The models that ship inside the package (the release registry), by name.

Each shipped model is here in two forms: its checkpoint (``NAME.safetensors``: the torch backend,
fine-tuning) and its export for ONNX Runtime (``NAME.json`` and the files it names, the encoder's
shared between models: the default backend). ``imgsum export gpt lstm --out src/imgsum/pretrained``
makes the second from the first.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Shipped model names, best first: the first is the default (chosen by dev CIDEr). Name -> checkpoint file.
SHIPPED: dict[str, str] = {"gpt": "gpt.safetensors", "lstm": "lstm.safetensors"}
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
    """The file of a shipped model: its checkpoint (torch) or its ONNX manifest (onnx); ``default`` is the
    first of :data:`SHIPPED`."""
    name = _name(name)
    if backend == "torch":
        return _folder() / SHIPPED[name]
    if backend == "onnx":
        return _folder() / f"{Path(SHIPPED[name]).stem}.json"
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def is_shipped(name_or_path: str | Path) -> bool:
    return str(name_or_path) == DEFAULT or str(name_or_path) in SHIPPED


def resolve_model(name_or_path: str | Path, backend: str = "torch") -> Path:
    """A shipped name (``default``, ``gpt``, ``lstm``) or a path -> the file to load.

    For a shipped name, ``backend`` picks the form: ``torch`` its checkpoint, ``onnx`` its ONNX manifest.
    A path is returned as it is (a checkpoint ``.safetensors``, an ONNX manifest ``.json``, or a folder
    holding one manifest), once it is known to exist.
    """
    if is_shipped(name_or_path):
        path = shipped_path(str(name_or_path), backend)
        if not path.is_file():
            hint = " (make it with: imgsum export gpt lstm --out src/imgsum/pretrained)" if backend == "onnx" else ""
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
