"""Arguments of ``imgsum eval``; the model, torch and pycocoevalcap are imported only when it runs."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .. import decoding
from ..pretrained import BACKENDS
from . import DEFAULT_DATA

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="shipped model name (default, gpt, lstm) or a checkpoint path")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help="caption file with the standard split files beside it (default: %(default)s)")
    p.add_argument("--format", default="auto", help="caption file layout (default: auto-detected)")
    p.add_argument("--images", help="image folder (default: found beside the caption file)")
    p.add_argument("--split", default="test", help="train, dev or test (default: %(default)s)")
    decoding.add_arguments(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--backend", choices=BACKENDS,
                   help="onnx: ONNX Runtime (the default, except for a checkpoint file); torch: PyTorch")
    p.add_argument("--threads", type=int, help="CPU threads for the model")
    p.add_argument("--limit", type=int, default=0, help="only the first N images of the split (quick checks)")
    p.add_argument("--out", help="output folder (default: runs/eval/<model>-<split>/)")
    p.add_argument("--no-ptb", dest="ptb", action="store_false",
                   help="imgsum's tokenizer instead of the PTB one (no Java; not the coco-caption protocol)")
    p.add_argument("--no-meteor", dest="meteor", action="store_false", help="skip METEOR (no Java needed for it)")
    p.add_argument("--no-agreement", dest="agreement", action="store_false", help="skip the human agreement block")
    p.add_argument("--no-report", dest="report", action="store_false", help="write the JSON outputs only")
    p.add_argument("--sample", type=int, default=12, help="random images shown in the report (default: %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..api import BackendUnavailable
    from .evaluate import EvalSettings, command_line, default_out, evaluate, write_outputs
    from .metrics import JavaMissing

    settings = EvalSettings(model=args.model, data=args.data, format=args.format, images=args.images,
                            split=args.split, decoding=decoding.overrides_from(args), batch_size=args.batch_size,
                            backend=args.backend,
                            threads=args.threads,
                            limit=args.limit, ptb=args.ptb, meteor=args.meteor, agreement=args.agreement,
                            progress=args.progress)
    try:
        result = evaluate(settings)
    except BackendUnavailable as err:
        logger.error("%s", err)
        return 2
    except JavaMissing as err:
        logger.error("%s (or pass --no-ptb --no-meteor for a quick score that is not the coco-caption protocol)",
                     err)
        return 2
    out = Path(args.out) if args.out else default_out(settings)
    result["command"] = command_line(settings, Path(args.out) if args.out else None)
    files = write_outputs(result, out, report=args.report, sample=args.sample)
    summary = {"metrics": result["metrics"], "human_agreement": {
        k: result["human_agreement"].get(k) for k in ("human", "model", "references", "skipped")
        if k in result["human_agreement"]}, "files": {k: str(v) for k, v in files.items()}}
    print(json.dumps(summary, indent=2))
    return 0
