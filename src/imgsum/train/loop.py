"""``imgsum train``: cached features, a decoder, validation on dev each epoch, the best model kept by
dev CIDEr, and resumption after an interruption (Ctrl-C, kill) from the last saved state.

Under ``torchrun`` it trains with DDP (:mod:`imgsum.train.distributed`): each step's images are shared
between the processes, and rank 0 alone validates and writes the run folder."""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.formats import load_captions
from ..data.splits import split_by_image
from ..concepts import ConceptTable, slot_tokens
from ..decoding import DecodingOptions, search_captions
from ..eval.metrics import score_captions
from ..files import remove_leftovers, write_atomic, write_text_atomic
from ..model_info import DecoderConfig, ModelInfo
from ..models.concept_layers import concept_sizes
from ..models.decoders import TorchStepper, create_decoder
from ..models.encoders import create_encoder
from ..text import Vocabulary, tokenize
from .config import TrainConfig
from .distributed import World, global_mean, rank_share
from .examples import Split, TextBatch, TextExamples, build_split, mirror_words, targets
from .features import FeatureCache, extract_features
from .objective import Objective
from .reward import CiderD
from .scst import sample_and_score
from .text_only import TextCaptions

logger = logging.getLogger(__name__)


class Interrupted(Exception):
    pass


class SaveFailed(Exception):
    """The run folder could not be written (a full disk, say); what was saved before is intact."""


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        # validation's (and the model's, unless ``release_decoding`` changes some)
        self.decoding = DecodingOptions(beam=cfg.beam, max_len=cfg.max_words + 1, block_repeats=True,
                                        mention=cfg.mention, concept_boost=cfg.concept_boost,
                                        concepts_once=cfg.concepts_once)
        try:  # the model's stored defaults
            self.release = self.decoding.with_overrides(**cfg.release_decoding)
        except TypeError as err:
            raise ValueError(f"release_decoding: {err}") from err
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.world = World.from_env()
        self.device = self.world.device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.world.start(self.device)
        if self.world.main:
            logger.info("training on %s%s", self.device,
                        f", {self.world.size} processes (DDP)" if self.world.distributed else "")
        self.stop_requested = False

    # ---- data -------------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.cfg
        data = load_captions(cfg.data, cfg.format, cfg.images)
        if data.image_dir is None:
            raise ValueError(f"no image folder for {cfg.data}: pass --images")
        self.splits, self.captions = split_by_image(data, seed=cfg.seed), data.captions
        self.table = ConceptTable.load()
        self.slots = DecoderConfig(**cfg.model).slots
        self.text, words = self.load_text()
        image_captions = [c for n in self.splits["train"] for c in data.captions[n]]
        self.init = self.load_init()
        if self.init:
            self.vocab = Vocabulary.from_list(self.init[1].vocab)
        else:
            self.vocab = Vocabulary.build(image_captions + words, cfg.min_count, first=slot_tokens(self.slots))
        encoder = create_encoder(cfg.encoder, pretrained=not cfg.random_encoder)
        self.encoder_name, self.preprocess, self.classifier = encoder.name, encoder.preprocess, encoder.classifier
        paths = [Path(data.image_dir) / n for n in sorted(data.captions)]
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
        if self.world.local_rank != 0:  # one process a machine extracts; the others then read its cache
            self.world.barrier()
        self.cache: FeatureCache = extract_features(encoder, paths, cache_dir, device=self.device)
        self.mirror_cache: FeatureCache | None = (extract_features(encoder, paths, cache_dir, device=self.device,
                                                                   mirror=True) if cfg.mirror > 0 else None)
        if self.world.local_rank == 0:
            self.world.barrier()
        self.data_info = {"data": str(cfg.data), "format": cfg.format, "skipped": data.skipped,
                          "images": {k: len(v) for k, v in self.splits.items()},
                          "text": {"data": cfg.text, "extra": cfg.extra_text, "captions": len(words)} if self.text else None}
        logger.info("data: %s; %d text-only captions; vocabulary %d words", self.data_info["images"], len(words),
                    len(self.vocab))

    def load_text(self) -> tuple[TextCaptions | None, list[str]]:
        """The text-only pool (``text``'s captions of its ``text_split``, and ``extra_text``'s, each
        ``extra_text_repeats`` times) and each of those captions once, as text."""
        cfg = self.cfg
        base = TextCaptions.load(cfg.text, self.table, cfg.max_words, cfg.text_split) if cfg.text else None
        extra = TextCaptions.load(cfg.extra_text, self.table, cfg.max_words) if cfg.extra_text else None
        words = [" ".join(w) for part in (base, extra) if part for w in part.words]
        if extra is None:
            return base, words
        repeats = max(1, cfg.extra_text_repeats)
        logger.info("text-only pool: %d captions + %d extra x %d", len(base.words) if base else 0, len(extra.words),
                    repeats)
        extra = extra * repeats
        return (base + extra if base else extra), words

    def load_init(self) -> tuple[dict[str, torch.Tensor], ModelInfo] | None:
        """The checkpoint ``init`` names, checked against this run's encoder and concept table."""
        cfg = self.cfg
        if not cfg.init:
            return None
        state, info = load_checkpoint(cfg.init)
        if info.encoder != cfg.encoder:
            raise ValueError(f"init: {cfg.init} was trained on {info.encoder} features, this run uses {cfg.encoder}")
        if [w for w, _ in info.concepts] != [w for w, _ in self.table.pairs()]:
            raise ValueError(f"init: {cfg.init} was trained with another concept table")
        if info.decoder.kind != cfg.decoder or info.decoder.slots != self.slots:
            raise ValueError(f"init: {cfg.init} is a {info.decoder.kind} decoder with {info.decoder.slots} slots; "
                             f"this run asks for {cfg.decoder} with {self.slots}")
        logger.info("starting from %s (%s, %d words)", cfg.init, info.decoder.kind, len(info.vocab))
        return state, info

    def init_decoder(self) -> DecoderConfig:
        """The init checkpoint's decoder with this run's dropout. The checkpoint fixes the architecture: other model
        options that differ from it are ignored, with a warning."""
        saved = self.init[1].decoder
        ignored = [f"{k}={v} (it has {getattr(saved, k)})" for k, v in self.cfg.model.items()
                   if k != "dropout" and getattr(saved, k) != v]
        if ignored:
            logger.warning("init: %s fixes the architecture; ignoring %s", self.cfg.init, ", ".join(ignored))
        return replace(saved, dropout=self.cfg.model.get("dropout", saved.dropout))

    def features(self, rows: np.ndarray, mirrored: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid (images, regions, C) and pooled (images, C) features of feature-cache ``rows``; those
        ``mirrored`` marks come from the mirrored photos' cache."""
        grid = np.empty((len(rows),) + self.cache.grid.shape[1:], dtype=np.float32)
        flip = np.zeros(len(rows), dtype=bool) if mirrored is None else mirrored
        for cache, which in ((self.cache, ~flip), (self.mirror_cache, flip)):
            if which.any():
                at = np.flatnonzero(which)
                order = np.argsort(rows[at])  # memory-map reads in file order
                grid[at[order]] = cache.grid[rows[at[order]]]
        g = torch.from_numpy(grid).to(self.device)  # (images, regions, C)
        return g, g.mean(1)

    def mirrored(self, batch: int, size: int) -> np.ndarray | None:
        """Which of the ``size`` images of cross-entropy batch ``batch`` are read mirrored: drawn from the seed, the
        epoch and the batch, so the same on every rank and after resuming (None: mirroring is off)."""
        if self.mirror_cache is None:
            return None
        rng = np.random.default_rng((self.cfg.seed, self.state["epoch"], batch))
        return rng.random(size) < self.cfg.mirror

    # ---- model ------------------------------------------------------------------------------
    def build(self) -> None:
        cfg = self.cfg
        dcfg = (self.init_decoder() if self.init else
                DecoderConfig(kind=cfg.decoder, vocab_size=len(self.vocab), feature_dim=self.cache.grid.shape[2],
                              regions=self.cache.grid.shape[1], max_len=cfg.max_words + 2,
                              **{**concept_sizes(self.table), **cfg.model}))
        torch.manual_seed(cfg.seed)
        self.model = create_decoder(dcfg)
        self.model.concepts.head.load(self.table, self.classifier)
        if self.init:
            missing, unexpected = self.model.load_state_dict(self.init[0], strict=False)
            if unexpected or set(missing) - {"head.weight"}:  # the output layer is tied to the embedding
                raise ValueError(f"init: {cfg.init} does not fit the decoder (missing {missing}, unexpected {unexpected})")
        self.model.to(self.device)
        objective = Objective(self.model, cfg.label_smoothing, self.vocab.eos_id, cfg.text_with_image)
        # The classifier's buffers are constants: no need to send them from rank 0 at each step.
        self.objective = (DistributedDataParallel(objective, broadcast_buffers=False) if self.world.distributed
                          else objective)
        self.train = self.split("train")
        self.dev = self.split("dev")
        self.data_info["train_captions"] = int(len(self.train.tokens))
        pool = self.text if self.text or cfg.own_concepts <= 0 else TextCaptions([], [])
        self.text_examples = (TextExamples(pool, self.table, self.vocab, self.slots, cfg.max_words, cfg.seed)
                              if pool else None)
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        self.batch = cfg.batch_images * self.world.size  # images a step, all processes together
        self.steps_per_epoch = math.ceil(len(self.train.images) / self.batch)
        self.total_steps = self.epoch_steps(scst=False) * cfg.epochs  # the cross-entropy epochs; SCST's follow
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_cider": -1.0, "elapsed": 0.0}

    @torch.no_grad()
    def split(self, name: str) -> Split:
        """A split's captions, with each image's concepts chosen by the decoder's classifier head."""
        index = self.cache.index()
        names = [n for n in self.splits[name] if n in index]
        rows = np.array([index[n] for n in names])
        ids, p = [], []
        for lo in range(0, len(rows), 256):
            _, pooled = self.features(rows[lo : lo + 256])
            i, q = self.model.concepts.head.select(pooled)
            ids.append(i.cpu())
            p.append(q.cpu())
        concepts = (torch.cat(ids), torch.cat(p)) if ids else (torch.zeros(0, self.slots, dtype=torch.long),
                                                               torch.zeros(0, self.slots))
        return build_split(names, self.captions, rows, concepts, self.table, self.vocab, self.cfg.max_words)

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if self.state["epoch"] >= cfg.epochs:
            return cfg.scst_lr
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, self.total_steps - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    # ---- resumable state --------------------------------------------------------------------
    def save_state(self) -> None:
        if not self.world.main:
            return
        saved = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "state": self.state,
                 "config": self.cfg.to_dict(), "vocab": self.vocab.to_list()}
        write_atomic(self.out / "last.pt", lambda tmp: torch.save(saved, tmp))

    @contextmanager
    def writing(self):
        """Turns a failed write into :class:`SaveFailed`, saying what is intact and how to go on."""
        try:
            yield
        except OSError as err:
            raise SaveFailed(f"could not write to {self.out}: {err.strerror or err}. Every file in it is whole and "
                             f"the last saved state ({self.out / 'last.pt'}) is intact: remove the cause (free some "
                             "space, say) and run the same command to resume from it") from err

    def try_resume(self) -> bool:
        path = self.out / "last.pt"
        if not path.exists():
            return False
        saved = torch.load(path, map_location=self.device, weights_only=True)
        if saved["vocab"] != self.vocab.to_list():
            raise ValueError(f"{path} was made with other data or settings; use a new --out folder")
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])
        self.state = saved["state"]
        logger.info("resuming from %s: epoch %d, step %d", path, self.state["epoch"] + 1, self.state["step_in_epoch"])
        return True

    # ---- training ---------------------------------------------------------------------------
    def run(self) -> dict:
        self.prepare()
        self.build()
        if self.world.main:
            remove_leftovers(self.out)  # a killed run's half-written temporaries
        self.world.barrier()
        self.try_resume()
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with self.writing():
                if self.world.main:
                    self.write_config()
                try:
                    while self.state["epoch"] < self.cfg.epochs + self.cfg.scst_epochs:
                        self.train_epoch()
                        self.end_epoch(self.validate() if self.world.main else None)
                        self.world.barrier()
                except Interrupted:
                    self.save_state()
                    if self.world.main:
                        logger.warning("interrupted: state saved to %s; run the same command again to resume",
                                       self.out / "last.pt")
                    raise
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            self.world.stop()
        return self.summary()

    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.stop_requested = True
        if self.world.main:
            logger.warning("stopping after this batch (signal %d)...", signum)

    def epoch_steps(self, scst: bool) -> int:
        images = self.cfg.scst_images if scst else self.cfg.epoch_images
        return min(self.steps_per_epoch, math.ceil(images / self.batch)) if images else self.steps_per_epoch

    def train_epoch(self) -> None:
        cfg, st, world = self.cfg, self.state, self.world
        rng = np.random.default_rng(cfg.seed * 1000 + st["epoch"])
        order = rng.permutation(len(self.train.images))  # the same on every rank
        targets_all = targets(self.train.tokens, self.vocab.eos_id)
        by_image = [[] for _ in self.train.images]
        for row, img in enumerate(self.train.image_of.tolist()):
            by_image[img].append(row)
        self.model.train()
        scst = st["epoch"] >= cfg.epochs
        steps = self.epoch_steps(scst)
        bar = tqdm(total=steps, initial=st["step_in_epoch"], unit="batch", disable=not world.main,
                   desc=f"epoch {st['epoch'] + 1}/{cfg.epochs + cfg.scst_epochs}{' (SCST)' if scst else ''}")
        loss_avg = acc_avg = None
        start, captions = time.time(), 0
        for b in range(st["step_in_epoch"], steps):
            batch = order[b * self.batch : (b + 1) * self.batch]
            images = rank_share(batch, world)
            rows = torch.tensor([r for i in images for r in by_image[i]])
            local = torch.tensor([j for j, i in enumerate(images) for _ in by_image[i]], device=self.device)
            mirrored = None if scst else self.mirrored(b, len(batch))
            if mirrored is not None:
                mirrored = rank_share(mirrored, world)
            grid, pooled = self.features(self.train.rows[images], mirrored)
            concepts = tuple(x.to(self.device) for x in self.train.concepts(images))
            tokens, tgt = self.train.tokens[rows], targets_all[rows]
            if mirrored is not None:
                flip = torch.from_numpy(mirrored)[local.cpu()]
                tokens, tgt = mirror_words(tokens, flip, self.vocab), mirror_words(tgt, flip, self.vocab)
            xe = None
            if not scst or cfg.scst_xe:
                text = self.text_batch(st["global_step"], rows, local)
                xe = (grid, pooled, concepts, tokens.to(self.device), tgt.to(self.device), local, text)
            if scst:
                loss, acc = self.scst_step(grid, pooled, concepts, [self.train.images[i] for i in images], xe)
                captions += len(images) * cfg.scst_samples
            else:
                loss, acc = self.train_step(grid, pooled, concepts, tokens.to(self.device), tgt.to(self.device),
                                            local, text)
                captions += len(rows) + (len(text.tokens) if text else 0)
            loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
            acc_avg = acc if acc_avg is None else 0.98 * acc_avg + 0.02 * acc
            st["step_in_epoch"] = b + 1
            st["global_step"] += 1
            bar.set_postfix({"loss": f"{loss_avg:.3f}", "reward" if scst else "acc": f"{acc_avg:.3f}",
                             "lr": f"{self.lr_at(st['global_step']):.1e}"})
            bar.update()
            if world.anyone(self.stop_requested, self.device):  # every rank stops at the same step
                st["elapsed"] += time.time() - start
                bar.close()
                raise Interrupted
            if st["global_step"] % cfg.save_every_steps == 0:
                self.save_state()
        bar.close()
        seconds = time.time() - start
        st["elapsed"] += seconds
        st["train_loss"], st["train_acc"] = loss_avg, acc_avg
        total = float(world.total(torch.tensor(float(captions), device=self.device)))
        st["train_captions_per_second"] = total / seconds if seconds > 0 and captions else None

    def text_batch(self, step: int, rows: torch.Tensor, images: torch.Tensor) -> TextBatch | None:
        """This rank's share of the step's text-only captions (``text_batch`` for each process), and with
        ``own_concepts``, a share of its image captions (training captions ``rows``, of the batch images ``images``)
        again, given the concepts their words name."""
        if not self.text_examples:
            return None
        size = self.cfg.text_batch * self.world.size if len(self.text_examples) else 0
        text = self.text_examples.batch(step, size, rank_share(np.arange(size), self.world).tolist())
        if self.cfg.own_concepts > 0:
            words = [self.train.words[r] for r in rows.tolist()]
            text = text + self.text_examples.own_concepts(words, images.cpu(), self.cfg.own_concepts, step)
        return text.to(self.device)

    def train_step(self, grid, pooled, concepts, tokens, targets_, image_index,
                   text: TextBatch | None) -> tuple[float, float]:
        """One cross-entropy step on a batch of image captions and, with a text corpus, one of text-only captions."""
        loss, count, correct, image_tokens = self.objective("xe", grid, pooled, concepts, tokens, targets_,
                                                            image_index, text)
        self._update(global_mean(loss, count, self.world))
        return (loss / count).item(), (correct / image_tokens).item()

    def _update(self, loss: torch.Tensor) -> None:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.state["global_step"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()

    @cached_property
    def cider(self) -> CiderD:
        """The SCST reward, its document frequencies from the training references (made on first use)."""
        return CiderD({n: [tokenize(c) for c in self.train.references[n]] for n in self.train.images})

    def scst_step(self, grid, pooled, concepts, images: list[str], xe: tuple | None = None) -> tuple[float, float]:
        """One self-critical step: the loss, and the mean CIDEr-D reward of the sampled captions. With ``xe``
        (:meth:`Objective.cross_entropy`'s arguments), ``scst_xe`` times their cross-entropy joins the loss.
        Sampling and the loss both run without dropout: the policy as it will caption."""
        self.model.eval()
        boost = self.cfg.scst_boost
        tokens, advantage, reward = sample_and_score(self.model, grid, pooled, concepts, images, self.cfg.scst_samples,
                                                     self.cfg.max_words + 1, self.vocab, self.table.pairs(), self.cider,
                                                     boost)
        if xe is None:
            loss, count = self.objective("scst", grid, pooled, concepts, tokens, advantage, boost)
            total = global_mean(loss, count, self.world)
        else:
            loss, count, xe_loss, xe_count = self.objective("scst+xe", (grid, pooled, concepts, tokens, advantage,
                                                                        boost), xe)
            total = global_mean(loss, count, self.world) + self.cfg.scst_xe * global_mean(xe_loss, xe_count, self.world)
        self._update(total)
        self.model.train()
        return (loss / count).item(), reward

    @torch.no_grad()
    def validate(self) -> dict:
        """Teacher-forced loss and token accuracy on all dev captions; BLEU-4 and CIDEr of beam search."""
        start = time.time()
        self.model.eval()
        dev, bs = self.dev, self.cfg.batch_images
        targets_all = targets(dev.tokens, self.vocab.eos_id)
        loss_sum = correct = count = 0.0
        n_images = len(dev.images) if not self.cfg.val_images else min(self.cfg.val_images, len(dev.images))
        hyps: dict[str, str] = {}
        for lo in tqdm(range(0, len(dev.images), bs), desc="validate", unit="batch", leave=False):
            idx = np.arange(lo, min(lo + bs, len(dev.images)))
            grid, pooled = self.features(dev.rows[idx])
            concepts = tuple(x.to(self.device) for x in dev.concepts(idx))
            sel = ((dev.image_of >= lo) & (dev.image_of < lo + len(idx))).nonzero().squeeze(1)
            want = targets_all[sel].to(self.device)
            logits = self.model(grid, pooled, dev.tokens[sel].to(self.device), (dev.image_of[sel] - lo).to(self.device),
                                concepts)
            mask = want != 0
            loss_sum += float(F.cross_entropy(logits.flatten(0, 1), want.flatten(), ignore_index=0, reduction="sum"))
            correct += float(((logits.argmax(-1) == want) & mask).sum())
            count += float(mask.sum())
            keep = idx[idx < n_images]
            if len(keep):
                made = search_captions(TorchStepper(self.model), grid[: len(keep)], pooled[: len(keep)], self.vocab,
                                       self.decoding, self.table.pairs())
                hyps.update({dev.images[i]: c.text for i, c in zip(keep, made)})
        scores = score_captions({k: dev.references[k] for k in hyps}, hyps, ptb=False, meteor=False)
        return {"dev_loss": loss_sum / count, "dev_token_accuracy": correct / count,
                "dev_BLEU-4": scores["BLEU-4"], "dev_CIDEr": scores["CIDEr"], "val_seconds": time.time() - start,
                "dev_samples": dict(list(hyps.items())[:3])}

    def end_epoch(self, metrics: dict | None) -> None:
        """Ends the epoch; rank 0, which validated (``metrics``), writes its row and the checkpoints."""
        st = self.state
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        if metrics is None:
            return
        st["elapsed"] += metrics["val_seconds"]
        row = {"epoch": st["epoch"], "train_loss": st.get("train_loss"), "train_token_accuracy": st.get("train_acc"),
               "lr": self.lr_at(st["global_step"]), "train_minutes": st["elapsed"] / 60,
               "train_captions_per_second": st.get("train_captions_per_second"), "processes": self.world.size,
               **metrics}
        rows = self.write_metrics(row)
        logger.info("epoch %d: %s", st["epoch"], {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        if metrics["dev_CIDEr"] > st["best_cider"]:
            st["best_cider"] = metrics["dev_CIDEr"]
            self.save_best(row)
        self.save_state()
        from .plots import plot_metrics

        plot_metrics(rows, self.out / "curves.png")

    def write_config(self) -> None:
        """The resolved configuration; left as it is when a resumed run's is the same."""
        path, text = self.out / "config.json", json.dumps(self.cfg.to_dict(), indent=2)
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text)

    def write_metrics(self, row: dict) -> list[dict]:
        """Rewrites metrics.jsonl whole, with ``row`` in place of any row of its epoch or later (left by a run
        that stopped before saving its state), so that the file is never half-written nor repeats an epoch.
        Returns all the rows now in it."""
        path = self.out / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        rows = [r for r in map(json.loads, filter(str.strip, lines)) if r["epoch"] < row["epoch"]] + [row]
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def save_best(self, row: dict) -> None:
        info = ModelInfo(
            encoder=self.encoder_name, preprocess=replace(self.preprocess, concept_crop=self.cfg.concept_crop),
            decoder=self.model.config,
            vocab=self.vocab.to_list(),
            concepts=self.table.pairs(),
            decoding=self.release,
            training={**self.data_info, "epoch": row["epoch"], "train_minutes": round(row["train_minutes"], 2),
                      "config": self.cfg.to_dict()},
            metrics={"dev": {k: v for k, v in row.items() if k.startswith("dev_") and k != "dev_samples"}},
        )
        save_checkpoint(self.out / "best.safetensors", self.model.state_dict(), info)
        logger.info("new best dev CIDEr %.4f: saved %s", row["dev_CIDEr"], self.out / "best.safetensors")

    def summary(self) -> dict | None:
        """What the run did (rank 0's; None on the other ranks)."""
        if not self.world.main:
            return None
        return {"out": str(self.out), "best_dev_CIDEr": self.state["best_cider"],
                "train_minutes": round(self.state["elapsed"] / 60, 2)}


def train(cfg: TrainConfig) -> dict | None:
    return Trainer(cfg).run()
