"""The models that ship inside the package (the release registry), by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Shipped model names, best first: the first is the default (chosen by dev CIDEr).
SHIPPED: dict[str, str] = {"gpt": "gpt.safetensors", "lstm": "lstm.safetensors"}
DEFAULT = "default"


def shipped_path(name: str) -> Path:
    """The file of a shipped model; ``default`` is the first of :data:`SHIPPED`."""
    if name == DEFAULT:
        name = next(iter(SHIPPED))
    if name not in SHIPPED:
        raise KeyError(name)
    return Path(str(resources.files(__name__).joinpath(SHIPPED[name])))


def resolve_model(name_or_path: str | Path) -> Path:
    """A shipped name (``default``, ``gpt``, ``lstm``) or a checkpoint path -> the checkpoint file."""
    if str(name_or_path) == DEFAULT or str(name_or_path) in SHIPPED:
        path = shipped_path(str(name_or_path))
        if not path.is_file():
            raise FileNotFoundError(f"shipped model {name_or_path!r} is missing from the installation ({path})")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        names = ", ".join([DEFAULT, *SHIPPED])
        raise FileNotFoundError(f"{name_or_path!r} is neither a shipped model ({names}) nor a checkpoint file")
    return path
