"""Save: the image with its caption in its own metadata, a .txt and a .json sidecar, and a captioned picture.

Every file goes into one output folder and nowhere else: names are built here from a cleaned stem, each path
is checked to resolve inside the folder, and files are created exclusively (an existing file, or a link
planted in the folder, is never written through).

The caption goes into the image without re-encoding it: for JPEG an EXIF segment (ImageDescription) is
spliced in, for PNG an iTXt ``Description`` chunk; other formats are saved as PNG (lossless).
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import threading
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

from ..images import to_rgb

logger = logging.getLogger(__name__)

IMAGE_DESCRIPTION = 0x010E  # EXIF/TIFF tag shown by photo tools as the description or title
ARTIST = 0x013B
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
PNG_KEYWORD = "Description"  # the PNG specification's predefined keyword
CAPTIONED_WIDTH = (480, 1600)  # the captioned picture is scaled into this range of widths
_claim_lock = threading.Lock()


class SaveError(Exception):
    """The save could not be done where or as asked; the message says why."""


@dataclass
class SavedFiles:
    folder: Path
    stem: str
    image: str
    text: str
    json: str
    captioned: str

    def names(self) -> list[str]:
        return [self.image, self.text, self.json, self.captioned]


def ascii_text(text: str) -> str:
    """EXIF ASCII fields hold 7-bit text: accents are dropped (é -> e), other characters become '?'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch if ch.isprintable() else " " for ch in folded)


def exif_with_description(source: Image.Image | None, caption: str, artist: str | None = None) -> Image.Exif:
    """The source's EXIF (its sub-IFDs kept) with ImageDescription set to the caption."""
    exif = Image.Exif()
    if source is not None:
        try:
            exif = source.getexif()
            for ifd in (EXIF_IFD, GPS_IFD):  # loaded so that tobytes() writes them back
                if ifd in exif:
                    exif.get_ifd(ifd)
        except Exception as err:  # a broken EXIF block is replaced, not a reason to fail the save
            logger.warning("unreadable EXIF data is replaced: %s", err)
            exif = Image.Exif()
    exif[IMAGE_DESCRIPTION] = ascii_text(caption)
    if artist:
        exif[ARTIST] = ascii_text(artist)
    return exif


def jpeg_with_description(data: bytes, caption: str, artist: str | None = None) -> bytes:
    """The JPEG's bytes with an EXIF segment carrying the caption; the compressed picture is untouched."""
    if data[:2] != b"\xff\xd8":
        raise SaveError("not a JPEG stream")
    with Image.open(io.BytesIO(data)) as image:
        exif = exif_with_description(image, caption, artist)
    payload = exif.tobytes()  # b"Exif\0\0" + TIFF structure
    if len(payload) + 2 > 0xFFFF:  # too big for one segment (huge maker notes): keep only what matters
        keep = Image.Exif()
        keep[IMAGE_DESCRIPTION] = exif[IMAGE_DESCRIPTION]
        if 0x0112 in exif:
            keep[0x0112] = exif[0x0112]  # orientation
        payload = keep.tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    head, body_start = _jpeg_header_segments(data)
    kept = [(m, seg) for m, seg in head if not (m == 0xE1 and seg[4:10] == b"Exif\x00\x00")]
    lead = [seg for m, seg in kept[:1] if m == 0xE0]  # a JFIF APP0 stays first
    rest = [seg for m, seg in kept[len(lead):]]
    return b"\xff\xd8" + b"".join(lead) + app1 + b"".join(rest) + data[body_start:]


def _jpeg_header_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The marker segments before the first scan, as (marker, bytes), and where the scan begins."""
    segments: list[tuple[int, bytes]] = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise SaveError(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return segments, pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segments.append((marker, data[pos:end]))
        pos = end
    raise SaveError("corrupt JPEG: no image data")


def png_with_description(data: bytes, caption: str) -> bytes:
    """The PNG's bytes with an iTXt ``Description`` chunk (UTF-8) before the image data; pixels untouched."""
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        raise SaveError("not a PNG stream")
    text = PNG_KEYWORD.encode("latin-1") + b"\x00\x00\x00\x00\x00" + caption.encode("utf-8")
    new_chunk = struct.pack(">I", len(text)) + b"iTXt" + text + struct.pack(">I", zlib.crc32(b"iTXt" + text))
    out, pos, inserted = [signature], len(signature), False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        chunk = data[pos:end]
        if kind in (b"tEXt", b"iTXt", b"zTXt") and chunk[8:].split(b"\x00", 1)[0] == PNG_KEYWORD.encode():
            pos = end  # an older description is replaced
            continue
        if kind == b"IDAT" and not inserted:
            out.append(new_chunk)
            inserted = True
        out.append(chunk)
        pos = end
        if kind == b"IEND":
            break
    if not inserted:
        raise SaveError("corrupt PNG: no image data")
    return b"".join(out)


def image_with_description(data: bytes, fmt: str, caption: str, artist: str | None = None) -> tuple[bytes, str]:
    """The image's bytes carrying the caption, and the suffix to save them under."""
    if fmt in ("JPEG", "MPO"):
        try:
            return jpeg_with_description(data, caption, artist), ".jpg"
        except (SaveError, struct.error) as err:
            logger.warning("JPEG kept as a re-encoded copy: %s", err)
    elif fmt == "PNG":
        try:
            return png_with_description(data, caption), ".png"
        except (SaveError, struct.error) as err:
            logger.warning("PNG kept as a re-encoded copy: %s", err)
    with Image.open(io.BytesIO(data)) as image:  # other formats (and damaged containers): a lossless PNG
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "P"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        info = PngInfo()
        info.add_itxt(PNG_KEYWORD, caption)
        out = io.BytesIO()
        image.save(out, "PNG", pnginfo=info)
    return out.getvalue(), ".png"


def captioned_picture(image: Image.Image, caption: str) -> Image.Image:
    """The picture with its caption written in a white band below, as the original desktop app made."""
    image = to_rgb(image)
    low, high = CAPTIONED_WIDTH
    width = min(max(image.width, low), high)
    if width != image.width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
    size = max(16, width // 30)
    font = ImageFont.load_default(size=size)
    margin = size
    lines = _wrap(caption, font, width - 2 * margin)
    line_height = round(size * 1.35)
    band = 2 * margin + line_height * len(lines)
    canvas = Image.new("RGB", (width, image.height + band), "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = image.height + margin
    for line in lines:
        draw.text((width / 2, y), line, fill=(20, 20, 20), font=font, anchor="ma")
        y += line_height
    return canvas


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            while font.getlength(word) > max_width and len(word) > 1:  # a word wider than the line is cut
                cut = max(1, int(len(word) * max_width / font.getlength(word)))
                lines.append(word[:cut])
                word = word[cut:]
            lines.append(word)
    return lines or [""]


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it resolves to a direct child of the folder."""
    path = folder / name
    if os.sep in name or (os.altsep and os.altsep in name) or name in ("", ".", "..") or \
            path.resolve(strict=False).parent != folder:
        raise SaveError(f"refused to write {name!r} outside the output folder")
    return path


def _claim(folder: Path, stem: str, suffixes: list[str]) -> tuple[str, list[Path]]:
    """Creates empty files ``stem<suffix>`` exclusively, numbering the stem (-2, -3, ...) until all are new."""
    with _claim_lock:
        for n in range(1, 10_000):
            candidate = stem if n == 1 else f"{stem}-{n}"
            if any(os.path.lexists(folder / (candidate + s)) for s in suffixes):
                continue  # taken (a file, or a link that could lead elsewhere)
            paths = [_inside(folder, candidate + s) for s in suffixes]
            made: list[Path] = []
            try:
                for p in paths:
                    os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644))
                    made.append(p)
            except FileExistsError:
                for p in made:
                    p.unlink(missing_ok=True)
                continue
            return candidate, paths
    raise SaveError(f"no free file name for {stem!r} in the output folder")


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def output_folder(folder: Path) -> Path:
    """The output folder, created if needed, as an absolute path with links resolved."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def save_captioned(folder: Path, stem: str, data: bytes, fmt: str, picture: Image.Image, caption: str,
                   record: dict, artist: str | None = None) -> SavedFiles:
    """Writes the four files for one image into ``folder`` (already resolved) and returns their names."""
    image_bytes, suffix = image_with_description(data, fmt, caption, artist)
    captioned = captioned_picture(picture, caption)
    out = io.BytesIO()
    captioned.save(out, "JPEG", quality=92, exif=exif_with_description(None, caption, artist))
    suffixes = [suffix, ".txt", ".json", ".captioned.jpg"]
    stem, paths = _claim(folder, stem, suffixes)
    try:
        names = [p.name for p in paths]
        saved = SavedFiles(folder, stem, *names)
        record = {**record, "files": {"image": names[0], "text": names[1], "json": names[2], "captioned": names[3]}}
        _write(paths[0], image_bytes)
        _write(paths[1], (caption + "\n").encode("utf-8"))
        _write(paths[2], (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        _write(paths[3], out.getvalue())
    except OSError as err:
        for p in paths:
            p.unlink(missing_ok=True)
        raise SaveError(f"cannot write into the output folder: {err.strerror or err}") from err
    logger.info("saved %s", ", ".join(saved.names()))
    return saved
