"""Arguments of ``imgsum train``; the training stack is imported only when it runs."""

from __future__ import annotations

import argparse
import json
import logging

from .config import TrainConfig

logger = logging.getLogger(__name__)

MODEL_OPTIONS = ("dim", "hidden", "attention_dim", "layers", "heads", "mlp_ratio", "dropout", "slots", "memory_layers",
                 "memory_scope")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", help="caption file (captions.txt, Flickr8k.token.txt, results.csv, COCO/Karpathy JSON, CSV/JSONL)")
    p.add_argument("--config", help="a JSON or TOML file of training options; command-line options override it")
    p.add_argument("--format", help="caption file layout (default: auto-detected)")
    p.add_argument("--images", help="image folder (default: found beside the caption file)")
    p.add_argument("--out", help="run folder: config, metrics.jsonl, curves.png, last.pt, best.safetensors")
    p.add_argument("--encoder", help="encoder name (default efficientnet_lite0)")
    p.add_argument("--random-encoder", action="store_true", default=None, help="allow an encoder with random weights")
    p.add_argument("--decoder", help="lstm or gpt")
    for name in ("epochs", "batch_images", "epoch_images", "warmup_steps", "min_count", "max_words", "beam",
                 "val_images", "seed", "threads", "text_batch", "extra_text_repeats", "scst_epochs", "scst_samples", "scst_images"):
        p.add_argument("--" + name.replace("_", "-"), type=int)
    for name in ("lr", "weight_decay", "clip", "label_smoothing", "scst_lr", "scst_xe", "scst_boost", "text_with_image",
                 "own_concepts", "mirror", "mention", "concept_boost"):
        p.add_argument("--" + name.replace("_", "-"), type=float)
    p.add_argument("--concepts-once", action="store_true", default=None,
                   help="the model's decoding default: say a visual concept's words once at most")
    p.add_argument("--text", help="captions without images (image,caption CSV, e.g. Flickr30k's) for text-only training")
    p.add_argument("--text-split", help="keep the text captions of the images listed in this file")
    p.add_argument("--extra-text", help="more captions without images, all kept (image,caption CSV; e.g. "
                                        "scripts/synthetic_captions.py's)")
    p.add_argument("--init", help="start from this checkpoint's decoder and vocabulary (fine-tuning)")
    p.add_argument("--device", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/imgsum/features)")
    for name in MODEL_OPTIONS[:-1]:
        p.add_argument("--" + name.replace("_", "-"), type=float if name == "dropout" else int, help="decoder hyper-parameter")
    p.add_argument("--memory-scope", choices=("all", "regions"),
                   help="what the memory layers rewrite: all the memory (default), or only the grid regions")


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    skip = {"config", "command", "func", "verbose", *MODEL_OPTIONS}
    cfg = cfg.updated({k: v for k, v in vars(args).items() if k not in skip})
    model = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k) is not None}
    cfg = cfg.updated({"model": {**cfg.model, **model}})
    if not cfg.data:
        raise SystemExit("imgsum train: give a caption file (or a --config that names one)")
    from .distributed import World
    from .loop import Interrupted, SaveFailed, train

    if not World.from_env().main:  # under torchrun, rank 0 speaks for all
        logging.getLogger("imgsum").setLevel(logging.WARNING)

    try:
        summary = train(cfg)
    except Interrupted:
        return 130
    except SaveFailed as err:
        logger.error("%s", err)
        return 1
    if summary is not None:
        print(json.dumps(summary))
    return 0
