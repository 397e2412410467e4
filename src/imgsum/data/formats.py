"""Readers for image-caption files in the layouts that datasets ship in, all giving one ``CaptionData``.

Formats (``FORMATS``):

* ``kaggle``: Kaggle ``captions.txt`` (Flickr8k, Flickr30k), CSV with header ``image,caption``.
* ``flickr8k-token``: ``Flickr8k.token.txt``, lines ``IMAGE.jpg#N<TAB>caption``.
* ``flickr30k-token``: ``results_20130124.token``, the same layout as ``flickr8k-token``.
* ``flickr30k-csv``: ``results.csv``, pipe-separated with header ``image_name| comment_number| comment``.
* ``coco``: COCO ``captions_*.json`` (``images`` with ``id``/``file_name``, ``annotations`` with
  ``image_id``/``caption``).
* ``karpathy``: Karpathy ``dataset_*.json``; gives splits too (``val`` -> ``dev``, ``restval`` -> ``train``).
* ``csv``: any CSV whose header has the columns ``image`` and ``caption``.
* ``jsonl``: JSON lines, one object with ``image`` and ``caption`` per line.

Bad rows never stop a load: they are counted in ``CaptionData.skipped`` under ``"malformed line"``
(a line of a text format), ``"malformed entry"`` (an entry of a JSON document), ``"empty caption"``
or ``"missing image"``, and one warning sums them up. A file that cannot be read as its format at
all (not UTF-8, JSON that does not parse, no image/caption columns) raises ``CaptionFormatError``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Callable

logger = logging.getLogger(__name__)

MALFORMED_LINE = "malformed line"
MALFORMED_ENTRY = "malformed entry"
EMPTY_CAPTION = "empty caption"
MISSING_IMAGE = "missing image"

#: Split names as datasets write them -> the names used here.
SPLIT_NAMES = {"train": "train", "restval": "train", "dev": "dev", "val": "dev", "validation": "dev", "test": "test"}

#: Standard split files looked for beside a caption file, in order: Flickr8k's, then Flickr30k's.
STANDARD_SPLIT_FILES = (
    {
        "train": "Flickr_8k.trainImages.txt",
        "dev": "Flickr_8k.devImages.txt",
        "test": "Flickr_8k.testImages.txt",
    },
    {"train": "splits/train.txt", "dev": "splits/val.txt", "test": "splits/test.txt"},
)
IMAGE_DIR_NAMES = ("images", "Images")

_TOKEN_LINE = re.compile(r"^[^\t#]+#\d+\t")
_PIPE_HEADER = ["image_name", "comment_number", "comment"]
_MISSING_NAMES_SHOWN = 5


class CaptionFormatError(ValueError):
    """A caption file that cannot be read as its format; the message names the file and the problem."""


@dataclass
class CaptionData:
    """Captions by image file name (a basename), with splits and the image folder when known."""

    captions: dict[str, list[str]]
    splits: dict[str, list[str]] | None = None
    image_dir: Path | None = None
    skipped: dict[str, int] = field(default_factory=dict)


Record = tuple[str, str]  # (image name as written in the file, caption as written)


@dataclass
class _Parsed:
    records: list[Record]
    splits: dict[str, list[str]] | None = None


@dataclass
class _Source:
    """One caption file's text, with its JSON parsed at most once."""

    path: Path
    text: str

    @cached_property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as error:
            raise CaptionFormatError(f"{self.path}: not valid JSON ({error})") from None

    def lines(self) -> Iterator[str]:
        """Non-blank lines without their line endings."""
        return (line for line in self.text.splitlines() if line.strip())


def load_captions(
    path: str | Path,
    fmt: str = "auto",
    image_dir: str | Path | None = None,
    split_files: Mapping[str, str | Path] | None = None,
) -> CaptionData:
    """Reads a caption file into ``CaptionData``.

    ``fmt`` is one of ``FORMATS`` or ``"auto"`` (detected from the file's name and content). When
    ``image_dir`` is given, or with ``fmt="auto"`` an ``images/`` or ``Images/`` folder lies beside the
    caption file, captions of images not in that folder are skipped. Splits come from ``split_files``
    (``{"train": path, "dev": path, "test": path}``; ``val`` means ``dev``) when given, else from the
    format itself (Karpathy), else from standard split files beside the caption file (Flickr8k's
    ``Flickr_8k.*Images.txt``, Flickr30k's ``splits/*.txt``). Splits keep only images with captions.
    """
    if fmt != "auto" and fmt not in _PARSERS:
        raise ValueError(f"unknown caption format {fmt!r}; expected 'auto' or one of {', '.join(FORMATS)}")
    source = _Source(Path(path), _read_text(Path(path)))
    folder = _image_folder(source.path, image_dir, look_beside=fmt == "auto")
    if fmt == "auto":
        fmt = _detect_format(source)
    skipped: Counter[str] = Counter()
    parsed = _PARSERS[fmt](source, skipped)
    captions, missing = _collect(parsed.records, folder, skipped)
    _warn_skipped(source.path, sum(map(len, captions.values())), skipped, missing)
    splits = _choose_splits(source.path, parsed.splits, split_files)
    if splits is not None:
        splits = _restrict_splits(splits, captions, source.path)
    return CaptionData(captions=captions, splits=splits, image_dir=folder, skipped=dict(skipped))


def detect_format(path: str | Path) -> str:
    """The format ``load_captions(path)`` would read the file as; ``CaptionFormatError`` if none fits."""
    return _detect_format(_Source(Path(path), _read_text(Path(path))))


def _detect_format(source: _Source) -> str:
    """The format of a caption file from its name and its content; ``CaptionFormatError`` if none fits."""
    path, first = source.path, next(source.lines(), "")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json_format(source.json, path)
    if suffix == ".jsonl":
        return "jsonl"
    if first.lstrip().startswith("{"):
        return "jsonl" if _is_json_line(first) else _json_format(source.json, path)
    if [part.strip() for part in first.split("|")] == _PIPE_HEADER:
        return "flickr30k-csv"
    if _TOKEN_LINE.match(first):
        name = path.name.lower()
        return "flickr30k-token" if "30k" in name or name.startswith("results") else "flickr8k-token"
    header = [column.strip() for column in next(csv.reader([first]), [])]
    if header == ["image", "caption"]:
        return "kaggle"
    if "image" in header and "caption" in header:
        return "csv"
    raise CaptionFormatError(
        f"{path}: cannot tell the caption format from its name and first line {first[:80]!r}; "
        f"pass fmt= one of {', '.join(FORMATS)}"
    )


def _is_json_line(line: str) -> bool:
    """Whether a line is one JSON-lines record: an object with an image and a caption."""
    try:
        return _image_caption(json.loads(line)) is not None
    except json.JSONDecodeError:
        return False


def read_split_file(path: str | Path) -> list[str]:
    """Image names listed one per line (blank lines ignored), as basenames."""
    return [_basename(line.strip()) for line in _read_text(Path(path)).splitlines() if line.strip()]


# --- reading -------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise CaptionFormatError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None


def _basename(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


def _image_folder(caption_path: Path, image_dir: str | Path | None, look_beside: bool) -> Path | None:
    """The given image folder (which must exist), else with ``look_beside`` an images folder beside the file."""
    if image_dir is not None:
        if not Path(image_dir).is_dir():
            raise FileNotFoundError(f"image folder not found: {image_dir}")
        return Path(image_dir)
    if look_beside:
        return next((d for d in (caption_path.parent / n for n in IMAGE_DIR_NAMES) if d.is_dir()), None)
    return None


# --- parsers: each returns the (image, caption) records and counts the entries it cannot read ----


def _parse_token(source: _Source, skipped: Counter[str]) -> _Parsed:
    records = []
    for line in source.lines():
        key, tab, caption = line.partition("\t")
        name, hash_, number = key.strip().rpartition("#")
        if not tab or not hash_ or not name or not number.isdigit():
            skipped[MALFORMED_LINE] += 1
            continue
        records.append((name, caption))
    return _Parsed(records)


def _parse_pipe_csv(source: _Source, skipped: Counter[str]) -> _Parsed:
    lines = source.lines()
    header = [part.strip() for part in next(lines, "").split("|")]
    if header != _PIPE_HEADER:
        raise CaptionFormatError(f"{source.path}: expected the header 'image_name| comment_number| comment', "
                                 f"found {'|'.join(header)[:80]!r}")
    records = []
    for line in lines:
        fields = line.split("|", 2)
        if len(fields) != 3 or not fields[0].strip() or not fields[1].strip().isdigit():
            skipped[MALFORMED_LINE] += 1
            continue
        records.append((fields[0].strip(), fields[2]))
    return _Parsed(records)


def _parse_csv(source: _Source, skipped: Counter[str]) -> _Parsed:
    reader = csv.reader(io.StringIO(source.text, newline=""))
    header = [column.strip() for column in next(reader, [])]
    if "image" not in header or "caption" not in header:
        raise CaptionFormatError(f"{source.path}: CSV header {','.join(header)[:80]!r} lacks the columns "
                                 "'image' and 'caption'")
    image_at, caption_at = header.index("image"), header.index("caption")
    records = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header) or not row[image_at].strip():
            skipped[MALFORMED_LINE] += 1
            continue
        records.append((row[image_at].strip(), row[caption_at]))
    return _Parsed(records)


def _parse_jsonl(source: _Source, skipped: Counter[str]) -> _Parsed:
    records = []
    for line in source.lines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        record = _image_caption(entry)
        if record is None:
            skipped[MALFORMED_LINE] += 1
            continue
        records.append(record)
    return _Parsed(records)


def _parse_coco(source: _Source, skipped: Counter[str]) -> _Parsed:
    document = _json_document(source, "coco")
    names = {
        image_id: image.get("file_name")
        for image in document["images"]
        if isinstance(image, dict) and (image_id := _json_key(image, "id")) is not None
    }
    records = []
    for annotation in document["annotations"]:
        if not isinstance(annotation, dict):
            annotation = {}
        record = _image_caption({"image": names.get(_json_key(annotation, "image_id")),
                                 "caption": annotation.get("caption")})
        if record is None:
            skipped[MALFORMED_ENTRY] += 1
            continue
        records.append(record)
    return _Parsed(records)


def _parse_karpathy(source: _Source, skipped: Counter[str]) -> _Parsed:
    document = _json_document(source, "karpathy")
    records: list[Record] = []
    splits: dict[str, list[str]] = {}
    for image in document["images"]:
        name = image.get("filename") if isinstance(image, dict) else None
        sentences = image.get("sentences") if isinstance(image, dict) else None
        if not isinstance(name, str) or not name.strip() or not isinstance(sentences, list):
            skipped[MALFORMED_ENTRY] += 1
            continue
        for sentence in sentences:
            caption = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(caption, str):
                skipped[MALFORMED_ENTRY] += 1
                continue
            records.append((name, caption))
        split = SPLIT_NAMES.get(str(image.get("split", "")))
        if split is not None:
            splits.setdefault(split, []).append(_basename(name))
    return _Parsed(records, splits)


_PARSERS: dict[str, Callable[[_Source, Counter[str]], _Parsed]] = {
    "kaggle": _parse_csv,
    "flickr8k-token": _parse_token,
    "flickr30k-token": _parse_token,
    "flickr30k-csv": _parse_pipe_csv,
    "coco": _parse_coco,
    "karpathy": _parse_karpathy,
    "csv": _parse_csv,
    "jsonl": _parse_jsonl,
}
FORMATS = tuple(_PARSERS)


def _image_caption(entry: Any) -> Record | None:
    """``(image, caption)`` from a JSON object holding both as strings (a non-blank image), else None."""
    if not isinstance(entry, dict):
        return None
    image, caption = entry.get("image"), entry.get("caption")
    if not isinstance(image, str) or not image.strip() or not isinstance(caption, str):
        return None
    return image.strip(), caption


def _json_key(entry: dict[str, Any], key: str) -> int | str | None:
    """An id usable as a dictionary key, or None."""
    value = entry.get(key)
    return value if isinstance(value, (int, str)) else None


def _json_format(document: Any, path: Path) -> str:
    if isinstance(document, dict) and isinstance(document.get("images"), list):
        if isinstance(document.get("annotations"), list):
            return "coco"
        if all(isinstance(image, dict) and "sentences" in image for image in document["images"][:10]):
            return "karpathy"
    raise CaptionFormatError(f"{path}: JSON is neither COCO captions (images + annotations) "
                             "nor a Karpathy split file (images with sentences)")


def _json_document(source: _Source, fmt: str) -> dict[str, Any]:
    document = source.json
    if _json_format(document, source.path) != fmt:
        raise CaptionFormatError(f"{source.path}: JSON is not in the {fmt} layout")
    return document


# --- shared post-processing ----------------------------------------------------------------------


def _collect(records: list[Record], image_dir: Path | None,
             skipped: Counter[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Groups captions by image basename, skipping empty captions and images absent from ``image_dir``.

    Returns the captions and the names of the missing images.
    """
    present = set(os.listdir(image_dir)) if image_dir is not None else None
    captions: dict[str, list[str]] = {}
    missing: dict[str, None] = {}
    for image, caption in records:
        name, caption = _basename(image), caption.strip()
        if not caption:
            skipped[EMPTY_CAPTION] += 1
        elif present is not None and name not in present:
            skipped[MISSING_IMAGE] += 1
            missing[name] = None
        else:
            captions.setdefault(name, []).append(caption)
    return captions, list(missing)


def _warn_skipped(path: Path, kept: int, skipped: Counter[str], missing: list[str]) -> None:
    if not skipped:
        return
    counts = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    message = f"{path}: kept {kept} captions, skipped {sum(skipped.values())} ({counts})"
    if missing:
        shown = ", ".join(missing[:_MISSING_NAMES_SHOWN])
        more = f" and {len(missing) - _MISSING_NAMES_SHOWN} more" if len(missing) > _MISSING_NAMES_SHOWN else ""
        message += f"; images not found: {shown}{more}"
    logger.warning(message)


def _choose_splits(path: Path, from_format: dict[str, list[str]] | None,
                   split_files: Mapping[str, str | Path] | None) -> dict[str, list[str]] | None:
    """Explicit split files first, then the format's own splits, then standard split files beside ``path``."""
    if split_files is None and from_format:
        return from_format
    if split_files is None:
        split_files = _find_split_files(path)
    if not split_files:
        return None
    splits: dict[str, list[str]] = {}
    for name, file in split_files.items():
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}")
        splits.setdefault(SPLIT_NAMES[name], []).extend(read_split_file(file))
    return splits


def _find_split_files(path: Path) -> dict[str, Path] | None:
    for layout in STANDARD_SPLIT_FILES:
        found = {split: path.parent / name for split, name in layout.items() if (path.parent / name).is_file()}
        if found:
            return found
    return None


def _restrict_splits(splits: dict[str, list[str]], captions: Mapping[str, list[str]],
                     path: Path) -> dict[str, list[str]]:
    """Splits holding only captioned images, each once; ``CaptionFormatError`` if splits share an image."""
    owner: dict[str, str] = {}
    restricted: dict[str, list[str]] = {}
    dropped = 0
    for split, names in splits.items():
        kept = restricted.setdefault(split, [])
        for name in dict.fromkeys(names):
            if owner.setdefault(name, split) != split:
                raise CaptionFormatError(f"splits for {path}: image {name} is in both {owner[name]} and {split}")
            if name in captions:
                kept.append(name)
            else:
                dropped += 1
    if dropped:
        logger.warning("%s: %d images listed in splits have no captions; left out of the splits", path, dropped)
    return restricted
