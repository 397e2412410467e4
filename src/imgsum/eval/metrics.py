"""Caption metrics with the coco-caption code (pycocoevalcap): BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D.

The coco-caption protocol: every caption (references and candidates) goes through the Stanford PTB
tokenizer, which lower-cases and drops punctuation; the scorers then compare token strings.
``CIDEr`` here is coco-caption's CIDEr-D (clipped n-gram counts, Gaussian length penalty, sigma 6),
with document frequencies taken from the references being scored.

Tokenize once, score many times: :func:`tokenize_captions` then :class:`CaptionScorer`, which keeps
one METEOR process (a Java program that takes seconds to start) for all the scorings of a run.
"""

from __future__ import annotations

import logging
import shutil
from typing import Mapping, Sequence

from ..text import tokenize

logger = logging.getLogger(__name__)

FAST_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")
ALL_METRICS = FAST_METRICS[:4] + ("METEOR",) + FAST_METRICS[4:]

#: Why the report has no SPICE column, written where SPICE would be.
SPICE_NOTE = (
    "SPICE not computed: pycocoevalcap's SPICE needs the Stanford CoreNLP 3.6.0 models, which it "
    "downloads from nlp.stanford.edu on first use, and this machine has no access to that site."
)

Captions = Mapping[str, Sequence[str]]


class JavaMissing(RuntimeError):
    pass


def require_java() -> None:
    if shutil.which("java") is None:
        raise JavaMissing(
            "the coco-caption PTB tokenizer and METEOR need Java, which is not installed: "
            "install a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless; "
            "elsewhere any Java 8+ runtime on the PATH) and try again"
        )


def tokenize_captions(captions: Captions, ptb: bool = True) -> dict[str, list[str]]:
    """Captions by id -> their tokenized forms (words joined by spaces), in the same order.

    ``ptb=True`` is the coco-caption protocol (Stanford PTB tokenizer, Java); ``ptb=False`` uses
    imgsum's own tokenizer and no Java (quick validation during training).
    """
    if not ptb:
        return {k: [" ".join(tokenize(c)) for c in v] for k, v in captions.items()}
    require_java()
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    # Trailing empty captions come back missing (the tokenizer's output loses its last blank lines).
    return {k: (tokenized.get(k, []) + [""] * len(v))[: len(v)] for k, v in captions.items()}


class CaptionScorer:
    """Scores tokenized candidates against tokenized references; one METEOR process for all calls.

    Use as a context manager, or call :meth:`close`, so that the METEOR process ends.
    """

    def __init__(self, meteor: bool = True) -> None:
        self.meteor = meteor
        self._meteor = None

    def __enter__(self) -> "CaptionScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.__del__()  # closes its pipe and waits for the Java process
            self._meteor = None

    def _meteor_scorer(self):
        if self._meteor is None:
            require_java()
            from pycocoevalcap.meteor.meteor import Meteor

            logger.debug("starting METEOR 1.5 (Java)")
            self._meteor = Meteor()
        return self._meteor

    def score(self, refs: Mapping[str, Sequence[str]], hyps: Mapping[str, str], per_image: bool = False) -> dict:
        """Corpus scores of ``hyps`` (id -> one tokenized caption) against ``refs`` (id -> tokenized references).

        With ``per_image``, adds ``{"per_image": {id: {"BLEU-4": ..., "METEOR": ..., "CIDEr": ...}}}``.
        """
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        ids = list(refs)
        if not ids:
            raise ValueError("nothing to score: no images")
        missing = [k for k in ids if k not in hyps]
        if missing:
            raise ValueError(f"{len(missing)} images have references but no caption, e.g. {missing[0]}")
        empty = [k for k in ids if not refs[k]]
        if empty:
            raise ValueError(f"{len(empty)} images have no reference caption, e.g. {empty[0]}")
        gts = {k: list(refs[k]) for k in ids}
        res = {k: [hyps[k]] for k in ids}
        out: dict = {}
        each: dict[str, list[float]] = {}
        bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"BLEU-{i + 1}": float(b) for i, b in enumerate(bleu)})
        each["BLEU-4"] = bleu_each[3]
        if self.meteor:
            score, meteor_each = self._meteor_scorer().compute_score(gts, res)
            out["METEOR"] = float(score)
            each["METEOR"] = meteor_each
        rouge, each["ROUGE-L"] = Rouge().compute_score(gts, res)
        out["ROUGE-L"] = float(rouge)
        cider, each["CIDEr"] = Cider().compute_score(gts, res)
        out["CIDEr"] = float(cider)
        if per_image:
            out["per_image"] = {k: {m: float(v[i]) for m, v in each.items()} for i, k in enumerate(ids)}
        return out


def score_captions(refs: Captions, hyps: Mapping[str, str], ptb: bool = True, meteor: bool = True,
                   per_image: bool = False) -> dict:
    """Corpus scores of ``hyps`` (id -> caption) against ``refs`` (id -> references), from raw text.

    ``ptb=False`` uses imgsum's own tokenizer and no Java (for quick validation during training).
    With ``per_image``, also returns ``{"per_image": {id: {"CIDEr": ..., ...}}}``.
    """
    ids = list(refs)
    gts = tokenize_captions({k: refs[k] for k in ids}, ptb)
    res = tokenize_captions({k: [hyps[k]] for k in ids if k in hyps}, ptb)
    with CaptionScorer(meteor=meteor) as scorer:
        return scorer.score(gts, {k: v[0] for k, v in res.items()}, per_image=per_image)
