"""``imgsum serve``: the web app and REST API on uvicorn. FastAPI and uvicorn are imported only in ``run``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..pretrained import BACKENDS
from .settings import LOOPBACK_HOSTS, MB

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", action="append", metavar="NAME[=PATH]",
                   help="a model to serve: a shipped name (ensemble, gpt, lstm), a model file, or NAME=PATH; "
                        "repeat for several, the first is the default (default: $IMGSUM_MODELS, else every installed "
                        "shipped model)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="run the models with ONNX Runtime or PyTorch (default: ONNX Runtime for shipped models, "
                        "PyTorch for checkpoint files)")
    p.add_argument("--output-dir", type=Path, help="the folder Save writes into (default: $IMGSUM_OUTPUT_DIR or ./imgsum-saved)")
    p.add_argument("--max-upload-mb", type=float, help="largest image accepted, in MiB (default 20)")
    p.add_argument("--threads", type=int, help="CPU threads for the models")
    p.add_argument("--allowed-host", action="append", metavar="HOST",
                   help="a Host header to accept besides the loopback names ('*': any); needed behind a proxy")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def settings_from_args(args: argparse.Namespace):
    from .settings import Settings, parse_models

    overrides: dict = {"output_dir": args.output_dir, "threads": args.threads, "backend": args.backend}
    if args.model:
        overrides["models"] = parse_models(args.model)
    if args.max_upload_mb:
        overrides["max_upload_bytes"] = int(args.max_upload_mb * MB)
    hosts = list(LOOPBACK_HOSTS) + (args.allowed_host or [])
    if args.host not in LOOPBACK_HOSTS:
        hosts.append(args.host if args.host not in ("0.0.0.0", "::") else "*")
    overrides["allowed_hosts"] = tuple(hosts)
    return Settings.from_env(**overrides)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = settings_from_args(args)
    if args.host not in LOOPBACK_HOSTS:
        logger.warning("binding %s: the app has no authentication; anyone who reaches this address can use it",
                       args.host)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10,
                server_header=False)
    return 0
