"""Sets a checkpoint's decoding defaults, chosen on the dev sets after training (docs/experiments.md), the
words its slot tokens say, and whether its classifier reads the photo's centre square.

    python scripts/set_decoding.py runs/gpt/best.safetensors --out gpt.safetensors --concept-boost 2 \
        --length-penalty 1 --concepts-once yes
    python scripts/set_decoding.py lstm.safetensors --out lstm.safetensors --concept-table
    python scripts/set_decoding.py gpt.safetensors --out gpt.safetensors --concept-crop yes
    imgsum export gpt.safetensors --out src/imgsum/pretrained --name gpt     # the ONNX form carries them too

The weights are copied unchanged; the metadata's ``decoding`` takes the given options (the others keep the
checkpoint's), and ``training["decoding_set"]`` records each change, oldest first: what it was before, what
changed. ``--concept-table`` takes the (word, plural) pairs from the concept table
(``src/imgsum/assets/imagenet_concepts.json``), whose words must be the checkpoint's: a rebuilt table with better
plurals ("sheep", not "sheeps") reaches a trained model so. ``--concept-crop yes`` gives the visual concepts the
classifier's reading of the centre square (``Preprocess.concept_crop``); training computes the concepts from the
cached grid, so this is a choice made after training, like the decoding's, recorded in
``training["preprocess_set"]``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from imgsum import decoding
from imgsum.checkpoint import load_checkpoint, save_checkpoint
from imgsum.concepts import ConceptTable


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="the new checkpoint file (may be the same path)")
    p.add_argument("--concept-table", action="store_true",
                   help="the words and plurals slot tokens say, from the concept table (same words as the model's)")
    p.add_argument("--concept-crop", choices=("yes", "no"),
                   help="the classifier reads the photo's centre square (yes) or the whole photo stretched (no)")
    decoding.add_arguments(p)
    args = p.parse_args(argv)
    overrides = decoding.overrides_from(args)
    if not overrides and not args.concept_table and args.concept_crop is None:
        p.error("give at least one decoding option, --concept-table or --concept-crop")
    state, info = load_checkpoint(args.checkpoint)
    new = info.decoding.with_overrides(**overrides)
    training = dict(info.training)
    if overrides:
        history = training.get("decoding_set", [])
        history = [history] if isinstance(history, dict) else list(history)  # one change, as checkpoints kept it
        training["decoding_set"] = [*history, {"before": info.decoding.to_dict(), "changed": overrides}]
    concepts = info.concepts
    if args.concept_table:
        concepts = ConceptTable.load().pairs()
        if [w for w, _ in concepts] != [w for w, _ in info.concepts]:
            p.error("the concept table's words are not the checkpoint's: it was trained with another table")
        changed = {w: plural for (w, plural), (_, before) in zip(concepts, info.concepts) if plural != before}
        training["concepts_set"] = {"plurals_changed": changed}
    preprocess = info.preprocess
    if args.concept_crop is not None:
        preprocess = replace(preprocess, concept_crop=args.concept_crop == "yes")
        training["preprocess_set"] = [*training.get("preprocess_set", []),
                                      {"before": info.preprocess.to_dict(), "concept_crop": preprocess.concept_crop}]
    save_checkpoint(args.out, state, replace(info, decoding=new, training=training, concepts=concepts,
                                             preprocess=preprocess))
    print(f"{args.out}: {new.to_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
