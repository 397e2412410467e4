"""Scores the JSONL of ``imgsum caption --format jsonl`` against a data set's references with the
coco-caption protocol (PTB tokenizer; BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D), all references per image.

    ls ../shared/data/flickr8k/images | grep -Fxf ../shared/data/flickr8k/Flickr_8k.testImages.txt \\
      | sed 's|^|../shared/data/flickr8k/images/|' \\
      | xargs .venv/bin/imgsum caption --format jsonl --beam 3 > runs/test-captions.jsonl
    .venv/bin/python benchmarks/score_captions_jsonl.py runs/test-captions.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_paths import FLICKR8K_CAPTIONS
from imgsum.data.formats import load_captions
from imgsum.eval.metrics import score_captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captions", help="JSONL from imgsum caption --format jsonl")
    parser.add_argument("--data", default=str(FLICKR8K_CAPTIONS),
                        help="caption file with the references (default: under $IMGSUM_DATA)")
    args = parser.parse_args()
    refs = load_captions(args.data).captions
    rows = [json.loads(line) for line in Path(args.captions).read_text().splitlines() if line.strip()]
    hyps = {Path(r["image"]).name: r["caption"] for r in rows if "caption" in r}
    unknown = sorted(set(hyps) - set(refs))
    if unknown:
        raise SystemExit(f"{len(unknown)} captioned images have no references in {args.data}, e.g. {unknown[0]}")
    scores = score_captions({name: refs[name] for name in hyps}, hyps)
    print(json.dumps({"images": len(hyps), "errors": len(rows) - len(hyps), "references_per_image":
                      sorted({len(refs[n]) for n in hyps}), "metrics": scores}, indent=2))


if __name__ == "__main__":
    main()
