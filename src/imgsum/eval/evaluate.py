"""``imgsum eval``: caption a split, score it with the coco-caption protocol, put it beside human agreement.

:func:`evaluate` returns everything as one JSON-ready dict; :func:`write_outputs` writes
``metrics.json`` (all but the per-image rows), ``captions.jsonl`` (one row per image) and the report.
``imgsum eval --subjects FOLDER`` (:mod:`.subject_eval`) shares the captioning and the outputs here.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from ..decoding import DecodingOptions
from ..files import write_text_atomic
from ..text import tokenize
from . import DEFAULT_DATA
from .bootstrap import interval
from .machine import machine_info, utc_now
from .metrics import SPICE_NOTE, CaptionScorer, tokenize_captions
from .subjects import is_degenerate

if TYPE_CHECKING:
    from ..api import CaptionResult, Captioner

logger = logging.getLogger(__name__)

EVAL_FORMAT = 1
#: Degenerate captions listed in ``stats`` (all are counted).
DEGENERATE_EXAMPLES = 20


@dataclass
class EvalSettings:
    model: str = "default"  # shipped name or checkpoint path
    data: str = DEFAULT_DATA  # caption file with standard splits beside it
    format: str = "auto"
    images: str | None = None  # image folder (default: found beside the caption file)
    split: str = "test"
    decoding: dict = field(default_factory=dict)  # DecodingOptions overrides (beam, max_len ...); absent: the model's
    batch_size: int = 16
    workers: int = 2  # image-decoding threads
    backend: str | None = None  # onnx or torch (None: the Captioner's default for this model)
    threads: int | None = None  # CPU threads of the model
    limit: int = 0  # first N images of the split only (0: all)
    ptb: bool = True  # coco-caption PTB tokenizer (Java); False: imgsum's tokenizer, no Java
    meteor: bool = True
    agreement: bool = True
    progress: bool = True
    subjects: str | None = None  # a folder of ImageNet-named photos: the subject rule, not the coco-caption metrics


def model_label(model: str) -> str:
    """A short name for output folders: ``gpt``; ``runs/gpt/best.safetensors`` -> ``gpt-best``;
    ``export/gpt.json`` -> ``gpt``; an exported model's folder -> its name."""
    path = Path(model)
    if path.suffix not in (".safetensors", ".json"):
        return path.name or str(model)
    return f"{path.parent.name}-{path.stem}" if path.stem in ("best", "last") and path.parent.name else path.stem


def load_split(settings: EvalSettings) -> tuple[dict[str, list[str]], list[str], Path]:
    """References of the split's images (name -> captions), the training split's captions, the image folder."""
    from ..data.formats import load_captions
    from ..data.splits import split_by_image

    if not Path(settings.data).is_file():
        raise FileNotFoundError(f"no caption file at {settings.data}: pass --data (e.g. Flickr8k.token.txt "
                                "with its standard split files beside it)")
    data = load_captions(settings.data, settings.format, settings.images)
    if data.image_dir is None:
        raise ValueError(f"no image folder found beside {settings.data}: pass --images")
    if data.splits is None:
        logger.warning("%s has no standard split files beside it: using a random split by image (seed 0)",
                       settings.data)
    splits = split_by_image(data)
    if settings.split not in splits:
        raise ValueError(f"unknown split {settings.split!r}; choose from {', '.join(splits)}")
    names = sorted(splits[settings.split])
    if settings.limit:
        names = names[: settings.limit]
    if not names:
        raise ValueError(f"the {settings.split} split of {settings.data} has no captioned images")
    train = [c for n in splits.get("train", []) for c in data.captions[n]]
    return {n: data.captions[n] for n in names}, train, Path(data.image_dir)


def load_captioner(settings: EvalSettings) -> tuple["Captioner", DecodingOptions]:
    """The model of ``settings`` and its decoding options with the settings' overrides."""
    from ..api import Captioner

    captioner = Captioner.load(settings.model, backend=settings.backend, threads=settings.threads)
    return captioner, captioner.info.decoding.with_overrides(**settings.decoding)


def model_settings(settings: EvalSettings, captioner: "Captioner", options: DecodingOptions) -> dict:
    """The ``settings`` block's description of the model and its decoding, shared by both kinds of evaluation."""
    return {
        "model": settings.model, "label": model_label(settings.model),
        "backend": captioner.backend, "path": str(captioner.path),
        "decoder": captioner.info.decoder.kind, "encoder": captioner.info.encoder,
        **options.to_dict(), "batch_size": settings.batch_size, "limit": settings.limit,
    }


def caption_files(captioner: "Captioner", paths: Sequence[Path], options: DecodingOptions, batch_size: int = 16,
                  workers: int = 2, progress: bool = True) -> tuple[list["CaptionResult"], dict[str, str]]:
    """Captions for image files, in order (:meth:`Captioner.caption_batch`, with a progress bar, decoding with
    ``options``).

    Returns the results (``.caption`` None where an image could not be read) and the errors by path.
    """
    from tqdm import tqdm

    with tqdm(total=len(paths), unit="img", desc="captioning", leave=False, disable=not progress) as bar:
        results = captioner.caption_batch(paths, batch_size=batch_size, workers=workers,
                                          on_result=lambda r: bar.update(), **options.to_dict())
    errors = {r.image: r.error for r in results if not r.ok}
    for image, error in errors.items():
        logger.warning("cannot read %s: %s", image, error)
    return results, errors


def caption_row(name: str, result: "CaptionResult") -> dict:
    """The part of a ``captions.jsonl`` row that any evaluation has: image, caption, concepts, degenerate."""
    return {"image": name, "caption": result.caption, "concepts": [c.to_dict() for c in result.concepts],
            "degenerate": is_degenerate(result.caption or "")}


def degenerate_stats(hyps: Mapping[str, str], top: int = DEGENERATE_EXAMPLES) -> dict:
    """How many captions repeat themselves (:func:`~.subjects.is_degenerate`), with the first ``top`` of them."""
    found = [{"image": k, "caption": c} for k, c in hyps.items() if is_degenerate(c)]
    return {"degenerate": len(found), "degenerate_share": len(found) / max(1, len(hyps)),
            "degenerate_examples": found[:top]}


def _normal(caption: str) -> str:
    return " ".join(tokenize(caption))


def caption_stats(hyps: Mapping[str, str], refs: Mapping[str, Sequence[str]], train_captions: Iterable[str],
                  vocab_size: int | None = None, top: int = 10) -> dict:
    """Length and vocabulary of the captions (words by imgsum's tokenizer), with the references' for scale."""
    words = {k: tokenize(c) for k, c in hyps.items()}
    lengths = [len(w) for w in words.values()]
    ref_lengths = [len(tokenize(c)) for v in refs.values() for c in v]
    counts = Counter(_normal(c) for c in hyps.values())
    train = {_normal(c) for c in train_captions}
    copied = sum(n for c, n in counts.items() if c in train)
    n = max(1, len(hyps))
    ref_words = {w for v in refs.values() for c in v for w in tokenize(c)}
    hyp_words = {w for ws in words.values() for w in ws}
    return {
        "captions": len(hyps),
        "length": {
            "mean": statistics.fmean(lengths) if lengths else 0.0,
            "median": statistics.median(lengths) if lengths else 0,
            "min": min(lengths, default=0),
            "max": max(lengths, default=0),
            "histogram": {str(k): v for k, v in sorted(Counter(lengths).items())},
        },
        "reference_length": {"mean": statistics.fmean(ref_lengths) if ref_lengths else 0.0,
                             "median": statistics.median(ref_lengths) if ref_lengths else 0},
        "distinct_captions": len(counts),
        "distinct_captions_share": len(counts) / n,
        "distinct_words": len(hyp_words),
        "reference_distinct_words": len(ref_words),
        "model_vocabulary": vocab_size,
        "copied_from_training": copied,
        "copied_from_training_share": copied / n,
        "training_captions": len(train),
        "most_frequent": [{"caption": c, "count": k} for c, k in counts.most_common(top)],
        **degenerate_stats(hyps),
    }


def evaluate(settings: EvalSettings) -> dict:
    """Captions the split, scores it, measures human agreement; one JSON-ready dict (``rows``: per image)."""
    refs, train_captions, image_dir = load_split(settings)
    names = list(refs)
    if settings.ptb or settings.meteor:
        from .metrics import require_java

        require_java()  # fail before the minutes of captioning, not after
    captioner, options = load_captioner(settings)
    logger.info("captioning %d %s images with %s (%s backend, %s)", len(names), settings.split, settings.model,
                captioner.backend, ", ".join(f"{k} {v}" for k, v in options.to_dict().items()))
    start = time.perf_counter()
    results, errors = caption_files(captioner, [image_dir / n for n in names], options, settings.batch_size,
                                    settings.workers, settings.progress)
    caption_seconds = time.perf_counter() - start
    made = {n: r for n, r in zip(names, results) if r.ok}
    hyps = {n: r.caption for n, r in made.items()}
    if not hyps:
        raise ValueError(f"none of the {len(names)} images could be read")
    scored_refs = {n: refs[n] for n in hyps}

    start = time.perf_counter()
    logger.info("scoring with the coco-caption metrics (%s tokenizer%s)", "PTB" if settings.ptb else "imgsum",
                ", METEOR 1.5" if settings.meteor else "")
    gts = tokenize_captions(scored_refs, settings.ptb)
    res = {k: v[0] for k, v in tokenize_captions({k: [c] for k, c in hyps.items()}, settings.ptb).items()}
    with CaptionScorer(meteor=settings.meteor) as scorer:
        scores = scorer.score(gts, res, per_image=True)
        per_image = scores.pop("per_image")
        agreement: dict = {"skipped": "not asked for (--no-agreement)"}
        if settings.agreement:
            from .agreement import human_agreement

            try:
                agreement = human_agreement(gts, res, scorer.score, progress=settings.progress)
            except ValueError as err:
                logger.warning("human agreement not measured: %s", err)
                agreement = {"skipped": str(err)}
    score_seconds = time.perf_counter() - start

    rows = [{**caption_row(n, r), "references": refs[n], **per_image[n]} for n, r in made.items()]
    return {
        "imgsum_eval": EVAL_FORMAT,
        "kind": "coco",
        "date": utc_now(),
        "machine": machine_info(),
        "settings": {
            **model_settings(settings, captioner, options),
            "data": str(settings.data), "image_dir": str(image_dir), "split": settings.split, "images": len(hyps),
            "tokenizer": "ptb" if settings.ptb else "imgsum", "meteor": settings.meteor,
        },
        "metrics": scores,
        "intervals": {"CIDEr": interval([per_image[n]["CIDEr"] for n in hyps])},
        "spice": SPICE_NOTE,
        "human_agreement": agreement,
        "stats": caption_stats(hyps, scored_refs, train_captions, len(captioner.info.vocab)),
        "unreadable": errors,
        "timing": {"caption_seconds": caption_seconds, "images_per_second": len(names) / caption_seconds,
                   "score_seconds": score_seconds},
        "rows": rows,
    }


def command_line(settings: EvalSettings, out: Path | None = None) -> str:
    """The ``imgsum eval`` command that gives these settings' results (decoding as resolved)."""
    parts = ["imgsum eval", f"--model {settings.model}"]
    if settings.subjects:
        parts.append(f"--subjects {settings.subjects}")
    elif settings.data != DEFAULT_DATA:
        parts.append(f"--data {settings.data}")
    if settings.split != "test" and not settings.subjects:
        parts.append(f"--split {settings.split}")
    decoding = [(f"--{k.replace('_', '-')}", v) for k, v in settings.decoding.items()]
    for flag, value in (("--backend", settings.backend), *decoding, ("--limit", settings.limit or None),
                        ("--out", out)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if not settings.subjects:
        parts += [flag for flag, on in (("--no-ptb", not settings.ptb), ("--no-meteor", not settings.meteor),
                                        ("--no-agreement", not settings.agreement)) if on]
    return " ".join(parts)


def default_out(settings: EvalSettings) -> Path:
    """``runs/eval/<model>-<split>/``; with ``subjects``, ``runs/eval/<model>-<the folder's name>/``."""
    what = Path(settings.subjects).resolve().name if settings.subjects else settings.split
    return Path("runs") / "eval" / f"{model_label(settings.model)}-{what}"


def write_outputs(result: dict, out: Path, report: bool = True, sample: int = 12, extremes: int = 10) -> dict:
    """Writes ``metrics.json``, ``captions.jsonl`` and ``report.html`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out / "metrics.json", "captions": out / "captions.jsonl"}
    if report:
        files["report"] = out / "report.html"
    summary = {k: v for k, v in result.items() if k != "rows"}
    summary["files"] = {k: p.name for k, p in files.items()}
    write_text_atomic(files["metrics"], json.dumps(summary, indent=2) + "\n")
    write_text_atomic(files["captions"], "".join(json.dumps(row) + "\n" for row in result["rows"]))
    if report:
        from .report import write_report

        write_report(result, files["report"], sample=sample, extremes=extremes)
    return files


def read_outputs(out: Path) -> dict:
    """What :func:`write_outputs` wrote into ``out``: ``metrics.json`` with its ``rows`` read back from
    ``captions.jsonl``. FileNotFoundError when ``out`` is not such a folder."""
    files = [out / "metrics.json", out / "captions.jsonl"]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: not an imgsum eval --out folder (no {' and no '.join(missing)})")
    result = json.loads(files[0].read_text(encoding="utf-8"))
    with open(files[1], encoding="utf-8") as f:
        result["rows"] = [json.loads(line) for line in f if line.strip()]
    return result
