"""``imgsum eval --subjects FOLDER``: does the model name what ImageNet-named photos show?

Every photo of the folder (recursively) is captioned. A photo named like ``n02123045_tabby.jpg`` is scored by
:class:`~.subjects.SubjectRule` (the rule of ``imagenet_dev`` in ``../shared/data/README.md``); a photo whose
name holds no known synset is captioned, counted and left out of the share, with a warning. The metrics:
the share of scored captions that name their subject, how many were scored, and how many of all the
captions are degenerate (:func:`~.subjects.is_degenerate`). Beside it, the share whose most probable
visual concept alone names the subject: what the classifier knew, the ceiling of a caption that says it.
No references, no Java.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..images import find_images
from .bootstrap import interval
from .evaluate import (EVAL_FORMAT, EvalSettings, caption_files, caption_row, degenerate_stats, load_captioner,
                       model_settings)
from .machine import machine_info, utc_now
from .subjects import SubjectRule

if TYPE_CHECKING:
    from ..api import CaptionResult

logger = logging.getLogger(__name__)

#: What the subject metrics follow, written beside them.
RULE_NOTE = ("a caption names its subject when it says, as whole words, a lemma of the photo's WordNet synset or "
             "of a hypernym below the generic ones (the imagenet_dev rule, ../shared/data/README.md)")
#: Photos without a synset listed in the metrics (all are counted).
UNNAMED_EXAMPLES = 20


def find_photos(folder: str | Path, limit: int = 0) -> list[Path]:
    """The image files under ``folder``, sorted (the first ``limit`` only, when it is not 0)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"no folder at {folder}: --subjects takes a folder of photos named like "
                                "n02123045_tabby.jpg")
    photos = [Path(p) for p in find_images([str(folder)])]
    if limit:
        photos = photos[:limit]
    if not photos:
        raise ValueError(f"no image files in {folder}")
    return photos


def check_synsets(rule: SubjectRule, names: list[str], folder: str | Path) -> list[str]:
    """The names that hold no known synset; warns about them, and refuses a folder where no name holds one."""
    unnamed = [n for n in names if rule.synset(n) is None]
    if len(unnamed) == len(names):
        raise ValueError(f"none of the {len(names)} photos in {folder} is named by a known ImageNet synset "
                         "(like n02123045_tabby.jpg): nothing to score")
    if unnamed:
        logger.warning("%d of %d photos have no known ImageNet synset in their names (e.g. %s): captioned, "
                       "counted as no_synset, left out of the share", len(unnamed), len(names), unnamed[0])
    return unnamed


def subject_metrics(rows: list[dict], no_synset: int) -> dict:
    """The share of scored captions that name their subject, the counts, and the degenerate captions."""
    scored = [r for r in rows if r["named"] is not None]
    named = sum(r["named"] for r in scored)
    concept_named = sum(bool(r["concept_named"]) for r in scored)
    degenerate = sum(r["degenerate"] for r in rows)
    return {"named_share": named / len(scored) if scored else None, "named": named, "scored": len(scored),
            "concept_named_share": concept_named / len(scored) if scored else None,
            "no_synset": no_synset, "degenerate": degenerate, "captions": len(rows)}


def subject_row(name: str, result: CaptionResult, rule: SubjectRule) -> dict:
    """A photo's row of captions.jsonl (:func:`~.evaluate.caption_row`) with its synset, whether its caption names
    the subject (``named``), and whether its most probable concept alone does (``concept_named``); None for a name
    without a synset."""
    return {**caption_row(name, result), "synset": rule.synset(name), "named": rule.names(result.caption, name),
            "concept_named": rule.names(result.concepts[0].word, name) if result.concepts else None}


def _intervals(rows: list[dict]) -> dict:
    """The named share's bootstrap interval over the scored photos (:mod:`.bootstrap`); none without one."""
    scored = [float(r["named"]) for r in rows if r["named"] is not None]
    return {"named_share": interval(scored)} if scored else {}


def evaluate_subjects(settings: EvalSettings) -> dict:
    """Captions the photos of ``settings.subjects`` and scores them by the subject rule; one JSON-ready dict
    (``rows``: one per captioned photo, with ``named`` True, False or None for a name without a synset)."""
    folder = Path(settings.subjects)
    photos = find_photos(folder, settings.limit)
    names = [p.relative_to(folder).as_posix() for p in photos]
    rule = SubjectRule()
    unnamed = check_synsets(rule, names, folder)
    captioner, options = load_captioner(settings)
    logger.info("captioning %d photos of %s with %s (%s backend, %s)", len(photos), folder, settings.model,
                captioner.backend, ", ".join(f"{k} {v}" for k, v in options.to_dict().items()))
    start = time.perf_counter()
    results, errors = caption_files(captioner, photos, options, settings.batch_size, settings.workers,
                                    settings.progress)
    caption_seconds = time.perf_counter() - start
    made = {n: r for n, r in zip(names, results) if r.ok}
    if not made:
        raise ValueError(f"none of the {len(photos)} photos could be read")
    rows = [subject_row(n, r, rule) for n, r in made.items()]
    metrics = subject_metrics(rows, sum(n in made for n in unnamed))
    logger.info("%d of %d scored captions name their subject; %d degenerate", metrics["named"], metrics["scored"],
                metrics["degenerate"])
    return {
        "imgsum_eval": EVAL_FORMAT,
        "kind": "subjects",
        "date": utc_now(),
        "machine": machine_info(),
        "settings": {**model_settings(settings, captioner, options), "subjects": str(folder),
                     "image_dir": str(folder), "images": len(made)},
        "metrics": metrics,
        "intervals": _intervals(rows),
        "rule": RULE_NOTE,
        "no_synset": [n for n in unnamed if n in made][:UNNAMED_EXAMPLES],
        "stats": degenerate_stats({n: r.caption for n, r in made.items()}),
        "unreadable": errors,
        "timing": {"caption_seconds": caption_seconds, "images_per_second": len(photos) / caption_seconds},
        "rows": rows,
    }
