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

DESCRIPTION = """\
Two evaluations, each writing metrics.json, captions.jsonl (one row per image: caption, concepts,
degenerate) and report.html into --out:

  imgsum eval [--model M] [--data Flickr8k.token.txt --split test]
      captions a split of a captioned data set and scores it with the coco-caption metrics (BLEU,
      METEOR, ROUGE-L, CIDEr-D), beside human agreement, and counts the degenerate captions.

  imgsum eval --subjects FOLDER [--model M]      e.g. --subjects ../shared/data/imagenet_dev
      captions every photo under FOLDER, named like n02123045_tabby.jpg, and reports the share of
      captions that name their subject (the imagenet_dev rule: a lemma of the photo's WordNet synset
      or of a hypernym below the generic ones), how many photos were scored, and the degenerate
      captions. Photos whose names hold no known synset are captioned, counted and left out of the
      share. No references and no Java; the data-set options below do not apply.

A caption is degenerate when it says a word other than a, the, and, in, on, of, with, or a two- or
three-word sequence, three times."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--model", default="default",
                   help="shipped model name (default, ensemble, gpt, lstm), a model file or an ensemble manifest")
    p.add_argument("--subjects", metavar="FOLDER",
                   help="evaluate the photos of FOLDER, named by their ImageNet synset, by the subject rule "
                        "instead of the coco-caption metrics")
    decoding.add_arguments(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--backend", choices=BACKENDS,
                   help="onnx: ONNX Runtime (the default, except for a checkpoint file); torch: PyTorch")
    p.add_argument("--threads", type=int, help="CPU threads for the model")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (quick checks)")
    p.add_argument("--out", help="output folder (default: runs/eval/<model>-<split>/, "
                                 "with --subjects runs/eval/<model>-<folder name>/)")
    p.add_argument("--no-report", dest="report", action="store_false", help="write the JSON outputs only")
    p.add_argument("--sample", type=int, default=12, help="random images shown in the report (default: %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    data = p.add_argument_group("captioned data set (the coco-caption metrics; not with --subjects)")
    data.add_argument("--data", default=DEFAULT_DATA,
                      help="caption file with the standard split files beside it (default: %(default)s)")
    data.add_argument("--format", default="auto", help="caption file layout (default: auto-detected)")
    data.add_argument("--images", help="image folder (default: found beside the caption file)")
    data.add_argument("--split", default="test", help="train, dev or test (default: %(default)s)")
    data.add_argument("--no-ptb", dest="ptb", action="store_false",
                      help="imgsum's tokenizer instead of the PTB one (no Java; not the coco-caption protocol)")
    data.add_argument("--no-meteor", dest="meteor", action="store_false",
                      help="skip METEOR (no Java needed for it)")
    data.add_argument("--no-agreement", dest="agreement", action="store_false",
                      help="skip the human agreement block")


def _summary(result: dict, files: dict[str, Path]) -> dict:
    """What ``imgsum eval`` prints: the metrics, their bootstrap intervals, the degenerate captions, agreement
    (coco-caption only), the files."""
    summary: dict = {"metrics": result["metrics"], "intervals": result["intervals"]}
    if "human_agreement" in result:
        summary["degenerate_captions"] = result["stats"]["degenerate"]
        summary["human_agreement"] = {k: result["human_agreement"][k] for k in ("human", "model", "references",
                                                                                "skipped")
                                      if k in result["human_agreement"]}
    summary["files"] = {k: str(v) for k, v in files.items()}
    return summary


def run(args: argparse.Namespace) -> int:
    from ..api import BackendUnavailable
    from .evaluate import EvalSettings, command_line, default_out, evaluate, write_outputs
    from .metrics import JavaMissing
    from .subject_eval import evaluate_subjects

    settings = EvalSettings(model=args.model, data=args.data, format=args.format, images=args.images,
                            split=args.split, decoding=decoding.overrides_from(args), batch_size=args.batch_size,
                            backend=args.backend,
                            threads=args.threads,
                            limit=args.limit, ptb=args.ptb, meteor=args.meteor, agreement=args.agreement,
                            progress=args.progress, subjects=args.subjects)
    try:
        result = evaluate_subjects(settings) if settings.subjects else evaluate(settings)
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
    print(json.dumps(_summary(result, files), indent=2))
    return 0
