"""Do the ONNX Runtime path and the torch path caption alike? All 1,000 Flickr8k test images.

Captions each test image with both backends (the model's own beam unless --beam), then prints the
share of images whose captions are identical, and BLEU-4 and CIDEr of each (coco-caption protocol:
PTB tokenizer; METEOR left out) with their differences. Exits 1 if the match rate is under 99% or a
metric differs by more than 0.002 (the bar of the ONNX issue). A model exported with an int8 encoder
(``imgsum export --int8-encoder``) is checked through the float encoder it was quantised from, and its
int8 captions' match and metrics are reported beside, unchecked.

    python benchmarks/onnx_equivalence.py                      # the default shipped model
    python benchmarks/onnx_equivalence.py --model lstm --out equivalence-lstm.json
    python benchmarks/onnx_equivalence.py --checkpoint runs/gpt/best.safetensors --bundle exported/best.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from data_paths import FLICKR8K_CAPTIONS

MIN_MATCH = 0.99
MAX_METRIC_DIFF = 0.002

logger = logging.getLogger("onnx_equivalence")


def caption_all(captioner, paths: list[Path], beam: int | None) -> tuple[list[str], float]:
    start = time.perf_counter()
    results = captioner.caption_batch(paths, beam=beam)
    seconds = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} images could not be read, e.g. {bad[0].image}: {bad[0].error}")
    return [r.caption for r in results], seconds


def int8_bundle(captioner):
    """The bundle of an ONNX model whose encoder is int8 (``imgsum export --int8-encoder``), else None."""
    bundle = getattr(captioner.model, "bundle", None)
    return bundle if bundle is not None and bundle.int8_encoder else None


def with_float_encoder(captioner, bundle, threads: int | None):
    """The same ONNX model (``bundle``) reading photos with the float encoder its int8 one was quantised from."""
    from imgsum.api import Captioner
    from imgsum.runtime.ort import OnnxCaptionModel

    return Captioner(OnnxCaptionModel(bundle, threads, float_encoder=True), captioner.name, "onnx", captioner.path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="a shipped model (both its forms are used)")
    p.add_argument("--checkpoint", help="instead of --model: the checkpoint for the torch backend ...")
    p.add_argument("--bundle", help="... and its export (manifest) for the ONNX backend")
    p.add_argument("--data", default=str(FLICKR8K_CAPTIONS),
                   help="Flickr8k.token.txt, with the split files beside it (default: under $IMGSUM_DATA)")
    p.add_argument("--beam", type=int, default=None, help="beam width (default: the model's own)")
    p.add_argument("--limit", type=int, default=0, help="first N test images only (0: all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", help="write the figures and every differing caption pair to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if bool(args.checkpoint) != bool(args.bundle):
        p.error("--checkpoint and --bundle go together")

    from imgsum.data.formats import load_captions
    from imgsum.eval.metrics import score_captions

    data = load_captions(args.data)
    if not data.splits or "test" not in data.splits or data.image_dir is None:
        raise SystemExit(f"{args.data}: no test split or image folder beside it")
    names = sorted(data.splits["test"])[: args.limit or None]
    paths = [data.image_dir / n for n in names]
    refs = {n: data.captions[n] for n in names}

    from imgsum.api import Captioner

    models = {"onnx": args.bundle or args.model, "torch": args.checkpoint or args.model}
    captioners = {b: Captioner.load(m, backend=b, threads=args.threads) for b, m in models.items()}
    int8 = int8_bundle(captioners["onnx"])
    if int8 is not None:  # the export is checked with the float encoder; the int8 one's effect is reported beside
        logger.info("%s reads photos with an int8 encoder: compared with torch through its float encoder %s",
                    models["onnx"], int8.float_encoder)
        captioners = {"onnx": with_float_encoder(captioners["onnx"], int8, args.threads), "torch": captioners["torch"],
                      "onnx_int8": captioners["onnx"]}
    captions, speed = {}, {}
    for backend, captioner in captioners.items():
        logger.info("captioning %d test images with %s on %s", len(paths), captioner.name, backend)
        captions[backend], seconds = caption_all(captioner, paths, args.beam)
        speed[backend] = len(paths) / seconds
    same = sum(a == b for a, b in zip(captions["onnx"], captions["torch"]))
    scores = {b: score_captions(refs, dict(zip(names, captions[b])), ptb=True, meteor=False) for b in captions}
    diff = {m: scores["onnx"][m] - scores["torch"][m] for m in ("BLEU-4", "CIDEr")}
    report = {
        "models": models, "images": len(names), "beam": args.beam, "identical_captions": same,
        "match_rate": same / len(names),
        "metrics": {b: {m: scores[b][m] for m in ("BLEU-4", "CIDEr")} for b in captions},
        "difference_onnx_minus_torch": diff,
        "images_per_second": speed,
        "differing": [{"image": n, "onnx": a, "torch": b}
                      for n, a, b in zip(names, captions["onnx"], captions["torch"]) if a != b],
    }
    ok = report["match_rate"] >= MIN_MATCH and all(abs(d) <= MAX_METRIC_DIFF for d in diff.values())
    print(f"images: {len(names)}; identical captions: {same} ({100 * report['match_rate']:.1f}%)")
    for m in ("BLEU-4", "CIDEr"):
        print(f"{m}: onnx {scores['onnx'][m]:.4f}  torch {scores['torch'][m]:.4f}  difference {diff[m]:+.4f}")
    if int8 is not None:
        same8 = sum(a == b for a, b in zip(captions["onnx_int8"], captions["torch"]))
        report["int8_encoder"] = {"identical_captions": same8, "match_rate": same8 / len(names)}
        print(f"with the int8 encoder (reported, not checked): identical captions {same8} "
              f"({100 * same8 / len(names):.1f}%); " + "; ".join(
                  f"{m} {scores['onnx_int8'][m]:.4f} ({scores['onnx_int8'][m] - scores['torch'][m]:+.4f})"
                  for m in ("BLEU-4", "CIDEr")))
    print("captioning speed (images/s, batch 16): " + "  ".join(f"{b} {v:.1f}" for b, v in speed.items()))
    print(f"{'PASS' if ok else 'FAIL'}: match >= {MIN_MATCH:.0%} and |difference| <= {MAX_METRIC_DIFF}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
