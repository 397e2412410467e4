"""The ``imgsum`` command line. Each subcommand imports its stack only when it runs."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from typing import Sequence

logger = logging.getLogger("imgsum")


def _caption_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--model", default="default", help="shipped model name (default, gpt, lstm) or a checkpoint path")
    p.add_argument("--beam", type=int, default=None, help="beam width (1: greedy; default: the model's own)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--format", choices=("text", "jsonl", "csv"), default="text")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")


def cmd_caption(args: argparse.Namespace) -> int:
    from .api import CaptionResult, Captioner
    from .images import find_images

    paths = find_images(args.paths)
    if not paths:
        logger.error("no images found in %s", " ".join(args.paths))
        return 2
    captioner = Captioner.load(args.model, threads=args.threads)
    write = _writer(args.format)
    failed = 0
    progress = None
    if len(paths) > 4:
        from tqdm import tqdm

        progress = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr)

    def emit(r: CaptionResult) -> None:
        nonlocal failed
        failed += not r.ok
        write(r)
        if progress:
            progress.update()

    captioner.caption_batch(paths, beam=args.beam, batch_size=args.batch_size, on_result=emit)
    if progress:
        progress.close()
    if failed:
        logger.error("%d of %d images could not be captioned", failed, len(paths))
    return 1 if failed else 0


def _writer(fmt: str):
    out = sys.stdout
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(["image", "caption", "error"])
        return lambda r: (w.writerow([r.image, r.caption or "", r.error or ""]), out.flush())
    if fmt == "jsonl":
        def jsonl(r):
            row = {"image": r.image, "caption": r.caption} if r.ok else {"image": r.image, "error": r.error}
            out.write(json.dumps(row) + "\n")
            out.flush()
        return jsonl

    def text(r):
        out.write(f"{r.image}\t{r.caption}\n" if r.ok else f"{r.image}\tERROR: {r.error}\n")
        out.flush()
    return text


def cmd_models(args: argparse.Namespace) -> int:
    from .checkpoint import read_info
    from .pretrained import SHIPPED, resolve_model

    rows = []
    for name in [*SHIPPED, *args.checkpoints]:
        try:
            path = resolve_model(name)
            info = read_info(path)
        except (FileNotFoundError, ValueError, OSError) as err:
            rows.append({"model": name, "error": str(err)})
            continue
        dev = info.metrics.get("dev", {})
        rows.append({"model": name, "default": name == next(iter(SHIPPED)), "decoder": info.decoder.kind,
                     "encoder": info.encoder, "vocab": len(info.vocab), "path": str(path),
                     "size_mb": round(path.stat().st_size / 1e6, 1), "dev": dev,
                     "test": info.metrics.get("test", {})})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<10} ERROR: {r['error']}")
            continue
        dev = r["dev"]
        metrics = "  ".join(f"{k.removeprefix('dev_')} {v:.3f}" for k, v in dev.items() if isinstance(v, float))
        flag = " (default)" if r["default"] else ""
        print(f"{r['model']}{flag}: {r['decoder']} decoder, {r['encoder']} encoder, {r['vocab']} words, "
              f"{r['size_mb']} MB\n    dev: {metrics}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsum", description="Caption photos with one English sentence.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("caption", help="caption images")
    _caption_args(p)
    p.set_defaults(func=cmd_caption)
    p = sub.add_parser("models", help="list the shipped models (and given checkpoints) with their dev metrics")
    p.add_argument("checkpoints", nargs="*")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    # Each tool registers its own arguments; its heavy imports happen only in ``run``.
    from .eval import cli as eval_cli
    from .serve import cli as serve_cli
    from .train import cli as train_cli

    for name, module, help_text in (("train", train_cli, "train a captioner on caption data"),
                                    ("eval", eval_cli, "score a model with the coco-caption metrics and write a report"),
                                    ("serve", serve_cli, "run the web app and REST API")):
        p = sub.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .images import ImageError

    try:
        return args.func(args)
    except (FileNotFoundError, ImageError, ValueError) as err:
        logger.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
