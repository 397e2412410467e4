"""Builds the concept vocabulary: each of the 1,000 ImageNet classes mapped to the words people write
in captions, from WordNet 3.0 and caption-text frequencies. Writes ``src/imgsum/assets/imagenet_concepts.json``.

    python scripts/build_concepts.py --wordnet DIR --synsets imagenet_synsets.txt \
        ../shared/data/flickr30k_captions/captions.txt

* ``--wordnet``: WordNet 3.0's dictionary folder (``data.noun``, ``index.noun``, ``noun.exc``), e.g. from
  Debian's ``wordnet-base`` (``apt-get download wordnet-base && dpkg -x wordnet-base_*.deb wn``:
  ``wn/usr/share/wordnet``).
* ``--synsets``: the 1,000 ImageNet synset ids in class order (one ``n01440764`` per line), e.g.
  ``timm/data/_info/imagenet_synsets.txt`` from ``pip download --no-deps timm``.
* ``CAPTIONS``: caption files (one caption per line, or ``image,caption`` CSV); only word counts are kept.
  The shipped table counts Flickr30k's captions alone, none of the Flickr8k text that evaluation uses.

For each class: its *words*, the class's own lemma that captions use most (its first lemma if none is
used), and the nearest hypernym whose lemma captions use at least ``--min-count`` times and whose
most common WordNet sense is that hypernym (so "woodwind, wood" never gives a saxophone "wood");
and its *subject* lemmas: the rule "a caption names its subject" of ``imagenet_dev`` (the class's
and its hypernyms' lemmas, the climb stopping at generic synsets), used by evaluation.
Each concept word also lists its WordNet ancestors, so that a decoder can relate a word it never
saw in a caption (koala) to words it did (animal).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import Counter
from pathlib import Path

STOP = set("""entity physical_entity object whole unit living_thing organism being artifact artefact
instrumentality device matter thing abstraction structure construction container covering commodity
implement equipment conveyance system article material substance part piece creation product causal_agent
cause agent vertebrate craniate chordate invertebrate placental placental_mammal eutherian eutherian_mammal
mammal mammalian animal animate_being beast brute creature fauna ware instrument way means surface area
region location point geological_formation formation natural_object food nutrient solid fluid liquid good
goods toy transport domestic_animal domesticated_animal""".split())


def read_nouns(folder: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Synset offset -> lemmas (lower case, spaces) and -> hypernym offsets (``@`` and ``@i``)."""
    lemmas, hypernyms = {}, {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        f = line.split(" | ")[0].split()
        offset, count = f[0], int(f[3], 16)
        words = [re.sub(r"\(.*\)$", "", w).replace("_", " ").lower() for w in f[4 : 4 + 2 * count : 2]]
        i = 4 + 2 * count
        pointers = int(f[i])
        hyper = [f[i + 2 + 4 * k] for k in range(pointers) if f[i + 1 + 4 * k] in ("@", "@i")]
        lemmas[offset], hypernyms[offset] = list(dict.fromkeys(words)), hyper
    return lemmas, hypernyms


def first_senses(folder: Path) -> dict[str, str]:
    """Lemma -> its most common noun synset."""
    out = {}
    for line in (folder / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        f = line.split()
        out[f[0].replace("_", " ").lower()] = f[-int(f[2])]
    return out


def plurals(folder: Path) -> dict[str, str]:
    """Irregular plurals from WordNet's exception list: singular -> plural."""
    out = {}
    for line in (folder / "noun.exc").read_text(encoding="latin-1").splitlines():
        plural, singular = line.split()[:2]
        out.setdefault(singular.replace("_", " "), plural.replace("_", " "))
    return out


def plural_of(word: str, irregular: dict[str, str]) -> str:
    """WordNet's irregular plural, or the spelling rule's. (Frequencies count a word with this form.)"""
    if word in irregular:
        return irregular[word]
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


QUANTIFIERS = ("two", "three", "four", "five", "several", "many", "few", "group of", "herd of", "pair of")


def caption_plural(word: str, irregular: dict[str, str], counts: Counter) -> str:
    """The plural a slot token says: :func:`plural_of`'s form if captions use it; otherwise the word itself when
    it already ends in a plural "s" ("binoculars", "clothes") or captions often put it after a number or
    quantifier ("two sheep": at least 3 times and in a tenth of its uses; "two volleyball players" is not
    evidence); otherwise :func:`plural_of`'s form."""
    plural = plural_of(word, irregular)
    if counts[plural] > 0:
        return plural
    after_number = sum(counts[f"{q} {word}"] for q in QUANTIFIERS)
    if re.search(r"[^su]s$", word) or (after_number >= 3 and after_number >= 0.1 * counts[word]):
        return word
    return plural


def caption_counts(files: list[Path]) -> Counter:
    """How many captions contain each 1-, 2- and 3-word sequence (lower case, letters only)."""
    counts: Counter = Counter()
    for path in files:
        with open(path, encoding="utf-8") as f:
            rows = csv.reader(f) if path.suffix == ".csv" or path.name == "captions.txt" else ([line] for line in f)
            for row in rows:
                words = re.sub(r"[^a-z]+", " ", row[-1].split("\t")[-1].lower()).split()
                grams = {" ".join(words[i : i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1)}
                counts.update(grams)
    return counts


def ancestors(offset: str, hypernyms: dict[str, list[str]]) -> list[str]:
    """``offset`` and every hypernym above it, nearest first (breadth first)."""
    seen, queue = [offset], [offset]
    while queue:
        for h in hypernyms.get(queue.pop(0), []):
            if h not in seen:
                seen.append(h)
                queue.append(h)
    return seen


def subject_synsets(offset: str, lemmas, hypernyms) -> list[str]:
    """The synsets whose lemmas name ``offset``'s subject: the climb stops at (and drops) generic ones."""
    out, queue = [], [offset]
    while queue:
        s = queue.pop(0)
        if s in out or any(lem.replace(" ", "_") in STOP for lem in lemmas[s]):
            continue
        out.append(s)
        queue.extend(hypernyms.get(s, []))
    return out


def caption_lemma(lemmas: list[str], freq) -> str:
    """The lemma captions use most; a longer lemma that holds a shorter one ("teddy bear", "teddy") wins
    when captions use it at least half as often. Unused everywhere: the first (WordNet's most common)."""
    best = max(lemmas, key=lambda w: (freq(w), -lemmas.index(w)))
    longer = [w for w in lemmas if f" {best} " in f" {w} " and w != best and 2 * freq(w) >= freq(best) > 0]
    return max(longer, key=freq) if longer else best


def build(wordnet: Path, synsets: list[str], counts: Counter, min_count: int, max_general: int) -> dict:
    lemmas, hypernyms = read_nouns(wordnet)
    first = first_senses(wordnet)
    irregular = plurals(wordnet)

    def freq(word: str) -> int:
        return counts[word] + counts[plural_of(word, irregular)]

    classes, concepts = [], {}
    for wnid in synsets:
        offset = wnid[1:]
        own = lemmas[offset]
        words = [(caption_lemma(own, freq), offset)]
        for s in subject_synsets(offset, lemmas, hypernyms)[1:]:
            used = [w for w in lemmas[s] if freq(w) >= min_count and first.get(w) == s]
            if used and len(words) <= max_general:
                words.append((caption_lemma(used, freq), s))
        for word, s in words:
            concepts.setdefault(word, s)
        subject = sorted({w for s in subject_synsets(offset, lemmas, hypernyms) for w in lemmas[s]})
        classes.append({"wnid": wnid, "name": own[0], "words": list(dict.fromkeys(w for w, _ in words)),
                        "subject": subject})
    nodes = sorted({a for s in concepts.values() for a in ancestors(s, hypernyms)})
    node_index = {n: i for i, n in enumerate(nodes)}
    words = sorted(concepts)
    return {
        "about": "ImageNet classes -> caption words; built by scripts/build_concepts.py from WordNet 3.0",
        "nodes": ["n" + n for n in nodes],
        "concepts": [{"word": w, "plural": caption_plural(w, irregular, counts), "synset": "n" + concepts[w],
                      "count": freq(w), "ancestors": [node_index[a] for a in ancestors(concepts[w], hypernyms)]}
                     for w in words],
        "classes": classes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet", type=Path, required=True)
    ap.add_argument("--synsets", type=Path, required=True)
    ap.add_argument("--min-count", type=int, default=5, help="captions a hypernym's word needs to be used")
    ap.add_argument("--max-general", type=int, default=3, help="hypernym words per class, nearest first")
    ap.add_argument("--out", type=Path, default=Path("src/imgsum/assets/imagenet_concepts.json"))
    ap.add_argument("captions", type=Path, nargs="+")
    args = ap.parse_args()
    synsets = args.synsets.read_text().split()
    table = build(args.wordnet, synsets, caption_counts(args.captions), args.min_count,
                  args.max_general)
    args.out.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    n = len(table["concepts"])
    unused = sum(c["count"] == 0 for c in table["concepts"])
    print(f"{args.out}: {len(table['classes'])} classes, {n} concept words ({unused} in no caption), "
          f"{len(table['nodes'])} WordNet nodes")


if __name__ == "__main__":
    main()
