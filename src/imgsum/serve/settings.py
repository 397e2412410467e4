"""The server's settings: which models, where Save writes, the limits, and the Unsplash access."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ..images import MAX_PIXELS
from ..pretrained import BACKENDS, SHIPPED, shipped_path

MB = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def installed_models(backend: str | None = None) -> dict[str, str]:
    """The shipped models that are installed, by name: ``{"ensemble": "ensemble", "gpt": "gpt", "lstm": "lstm"}``
    when all are.

    With no ``backend``, a model whose ONNX export is missing but whose checkpoint is there is served from
    the checkpoint (with PyTorch).
    """
    found: dict[str, str] = {}
    for name in SHIPPED:
        if shipped_path(name, backend or "onnx").is_file():
            found[name] = name
        elif backend is None and shipped_path(name, "torch").is_file():
            found[name] = str(shipped_path(name, "torch"))
    return found


def parse_models(specs: str | list[str]) -> dict[str, str]:
    """``"gpt,lstm,mine=/path/x.safetensors"`` (or a list of such items) -> ``{name: shipped name or path}``.

    A bare path is named after its file (``/a/b/tiny.safetensors`` -> ``tiny``).
    """
    items = specs.split(",") if isinstance(specs, str) else specs
    models: dict[str, str] = {}
    for item in (s.strip() for s in items):
        if not item:
            continue
        name, sep, target = item.partition("=")
        if not sep:
            target = item
            name = Path(item).stem if ("/" in item or item.endswith(".safetensors")) else item
        name, target = name.strip(), target.strip()
        if not name or not target:
            raise ValueError(f"bad model spec {item!r}: want NAME, PATH or NAME=PATH")
        if name in models:
            raise ValueError(f"model name {name!r} is given twice")
        models[name] = target
    return models


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know; build one directly, or with :meth:`from_env`."""

    #: name shown in the app and the API -> shipped model name or model path; the first is the default.
    models: Mapping[str, str] = field(default_factory=installed_models)
    backend: str | None = None  # "onnx" or "torch"; default: Captioner.load's own choice for each model
    output_dir: Path = Path("imgsum-saved")
    max_upload_bytes: int = 20 * MB  # one image
    max_request_bytes: int = 50 * MB  # one whole request body
    max_images: int = 16  # images in one caption request
    max_pixels: int = MAX_PIXELS  # larger images are refused before decoding (decompression bombs)
    #: The widest beam a request may ask for, unless the model's own beam is wider: then that is its bound. At least
    #: every shipped model's own (a test checks it), so that it is the one bound for all of them.
    max_beam: int = 16
    max_batch: int = 16  # images the worker runs through the model at once
    max_pending: int = 64  # requests waiting for the worker; more are answered 503
    max_concurrent_uploads: int = 16  # POST bodies read and handled at once; more wait, unread
    decode_slots: int = 2  # uploads decoded at once
    threads: int | None = None  # CPU threads for the models (default: the backend's own)
    #: Host header values accepted (a guard against DNS rebinding); ``("*",)`` accepts any.
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    unsplash_access_key: str | None = None
    unsplash_api_url: str = "https://api.unsplash.com"
    unsplash_timeout_s: float = 6.0
    app_name: str = "imgsum"  # the utm_source of Unsplash attribution links

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from ``IMGSUM_*`` variables and ``UNSPLASH_ACCESS_KEY``; keyword overrides win."""
        env = os.environ if env is None else env
        values: dict = {}
        backend = overrides.get("backend") or env.get("IMGSUM_BACKEND") or None
        if backend:
            values["backend"] = backend
        if env.get("IMGSUM_MODELS"):
            values["models"] = parse_models(env["IMGSUM_MODELS"])
        if env.get("IMGSUM_OUTPUT_DIR"):
            values["output_dir"] = Path(env["IMGSUM_OUTPUT_DIR"])
        if env.get("IMGSUM_MAX_UPLOAD_MB"):
            values["max_upload_bytes"] = int(float(env["IMGSUM_MAX_UPLOAD_MB"]) * MB)
        if env.get("UNSPLASH_ACCESS_KEY"):
            values["unsplash_access_key"] = env["UNSPLASH_ACCESS_KEY"].strip()
        if env.get("IMGSUM_UNSPLASH_API_URL"):
            values["unsplash_api_url"] = env["IMGSUM_UNSPLASH_API_URL"].rstrip("/")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "models" not in values:
            values["models"] = installed_models(values.get("backend"))
        return cls(**values).checked()

    def checked(self) -> "Settings":
        """Self, after checking that the values make sense; raises ValueError saying which does not."""
        if not self.models:
            raise ValueError("no models to serve: none of the shipped models is installed; "
                             "give one with --model NAME=CHECKPOINT (or IMGSUM_MODELS)")
        for name in ("max_upload_bytes", "max_request_bytes", "max_images", "max_pixels", "max_beam", "max_batch",
                     "max_pending", "max_concurrent_uploads", "decode_slots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.max_request_bytes < self.max_upload_bytes:
            return replace(self, max_request_bytes=self.max_upload_bytes + MB)
        return self

    @property
    def default_model(self) -> str:
        return next(iter(self.models))

    @property
    def unsplash_enabled(self) -> bool:
        return bool(self.unsplash_access_key)
