"""Caption metrics with the coco-caption code (pycocoevalcap): BLEU-1..4, METEOR, ROUGE-L, CIDEr-D."""

from __future__ import annotations

import logging
import shutil
from typing import Mapping, Sequence

from ..text import tokenize

logger = logging.getLogger(__name__)

FAST_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")
ALL_METRICS = FAST_METRICS[:4] + ("METEOR",) + FAST_METRICS[4:]


class JavaMissing(RuntimeError):
    pass


def require_java() -> None:
    if shutil.which("java") is None:
        raise JavaMissing(
            "the coco-caption PTB tokenizer and METEOR need Java, which is not installed: "
            "install a Java runtime (Debian: apt-get install default-jre-headless) and try again"
        )


def _tokenized(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, str], ptb: bool):
    gts = {k: [{"caption": c} for c in v] for k, v in refs.items()}
    res = {k: [{"caption": hyps[k]}] for k in refs}
    if ptb:
        require_java()
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        return tok.tokenize(gts), tok.tokenize(res)
    return ({k: [" ".join(tokenize(c["caption"])) for c in v] for k, v in gts.items()},
            {k: [" ".join(tokenize(v[0]["caption"]))] for k, v in res.items()})


def score_captions(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, str], ptb: bool = True,
                   meteor: bool = True, per_image: bool = False) -> dict:
    """Corpus scores of ``hyps`` (id -> caption) against ``refs`` (id -> references).

    ``ptb=False`` uses imgsum's own tokenizer and no Java (for quick validation during training).
    With ``per_image``, also returns ``{"per_image": {id: {"CIDEr": ...}}}``.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = _tokenized(refs, hyps, ptb)
    out: dict = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"BLEU-{i + 1}": float(b) for i, b in enumerate(bleu)})
    if meteor:
        require_java()
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        out["METEOR"] = float(scorer.compute_score(gts, res)[0])
        del scorer
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    cider, cider_each = Cider().compute_score(gts, res)
    out["CIDEr"] = float(cider)
    if per_image:
        out["per_image"] = {k: {"CIDEr": float(s)} for k, s in zip(gts.keys(), cider_each)}
    return out
