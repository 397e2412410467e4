"""Training configuration: defaults, a JSON or TOML file, then command-line overrides."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class TrainConfig:
    data: str = ""  # caption file
    format: str = "auto"
    images: str | None = None  # image folder (default: found beside the caption file)
    out: str = "runs/default"
    encoder: str = "efficientnet_lite0"
    random_encoder: bool = False  # explicit opt-in to an encoder without pretrained weights
    decoder: str = "gpt"
    model: dict = field(default_factory=dict)  # DecoderConfig overrides (dim, layers, heads, hidden, dropout ...)
    epochs: int = 10
    batch_images: int = 32  # each image brings all its captions; a process's share under torchrun
    epoch_images: int = 0  # training images per cross-entropy epoch (0: all); a short run for a quick check
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    clip: float = 1.0
    label_smoothing: float = 0.1
    min_count: int = 5
    max_words: int = 20
    text: str | None = None  # captions without images (an image,caption CSV: Flickr30k's) for text-only training
    text_split: str | None = None  # keep the text captions of the images listed in this file (one name a line)
    text_batch: int = 96  # text-only captions beside each batch of images (each process's, under torchrun)
    extra_text: str | None = None  # more captions without images, all kept (an image,caption CSV), e.g. written by a language model
    extra_text_repeats: int = 1  # how many times each extra caption joins the text-only pool (its share of the draws)
    # Share of the text-only captions shown with a random image of the batch (its grid and pooled features) instead
    # of none: teaches the decoder to say a confident concept with an image in view, not only without one (0: none).
    text_with_image: float = 0.0
    # Share of the image captions also given, a second time, the concepts their own words name (noisy, like text-only
    # ones) instead of the classifier's, with their image in view: a concept in a slot is what the caption says (0: none).
    own_concepts: float = 0.0
    # Share of the training images read mirrored (left and right swapped in their captions) in the cross-entropy
    # epochs: the mirrored photos' features are extracted once and cached beside the plain ones (0: never).
    mirror: float = 0.0
    init: str | None = None  # start from this checkpoint's decoder and vocabulary (fine-tuning) instead of from scratch
    scst_epochs: int = 0  # self-critical epochs (CIDEr-D reward) after the cross-entropy ones
    scst_lr: float = 2e-5
    scst_samples: int = 5  # captions sampled per image
    scst_images: int = 0  # training images per self-critical epoch (0: all)
    # Weight of the cross-entropy of the batch's own captions (and of text-only captions, with a text corpus)
    # added to the self-critical loss: keeps the captions from collapsing to a few generic ones (0: none).
    scst_xe: float = 0.0
    # The concept boost of decoding (imgsum.decoding.ConceptGuide) in the policy self-critical training samples
    # from and improves, so that it learns the sentences it will say with the boost (0: the model's own policy).
    scst_boost: float = 0.0
    beam: int = 3
    mention: float = 0.0  # the model's decoding defaults (imgsum.decoding.DecodingOptions), chosen on dev sets
    concept_boost: float = 0.0
    concepts_once: bool = False
    # The best checkpoint's stored decoding defaults, where they differ from the ones above (which validation
    # uses to pick the best epoch): settings chosen on the dev sets after a run, e.g. {concept_boost = 4.0}.
    release_decoding: dict = field(default_factory=dict)
    # The model's classifier reads the photo's centre square (imgsum.images.Preprocess.concept_crop). Training
    # takes the concepts from the cached grid, so this only changes the model the run writes.
    concept_crop: bool = False
    val_images: int = 0  # dev images decoded each epoch for BLEU/CIDEr (0: all)
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default)
    device: str = "auto"
    cache_dir: str | None = None
    save_every_steps: int = 200

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        text = Path(path).read_text()
        raw = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
        return cls().updated(raw)

    def updated(self, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return TrainConfig(**{**asdict(self), **{k: v for k, v in values.items() if v is not None}})

    def to_dict(self) -> dict:
        return asdict(self)
