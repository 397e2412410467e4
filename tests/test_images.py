"""Real photos: EXIF orientation, every common mode converted, absurd sizes refused, bad files named; the
encoder's views of a photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgsum.images import ImageError, Preprocess, find_images, open_image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_honoured():
    # A wide image stored with orientation 6 ("rotate 90 clockwise to display") is shown tall.
    image = Image.new("RGB", (60, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = open_image(_encode(image, "JPEG", exif=exif.tobytes()))
    assert upright.size == (20, 60)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "P", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_every_mode_becomes_rgb(mode):
    base = Image.new("RGB", (16, 12), (200, 100, 50))
    if mode == "I;16":
        image = Image.fromarray(np.full((12, 16), 40000, dtype=np.uint16))
    else:
        image = base.convert(mode)
    out = open_image(image)
    assert out.mode == "RGB" and out.size == (16, 12)


def test_transparent_pixels_go_white_and_16_bit_keeps_brightness():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert open_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert open_image(sixteen).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("array", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                   np.ones((8, 8, 4), np.float64), np.zeros((8, 8, 1), np.uint16)])
def test_arrays_are_accepted(array):
    assert open_image(array).size == (8, 8)


def test_bad_arrays_are_refused():
    with pytest.raises(ImageError, match="shape"):
        open_image(np.zeros((8, 8, 5)))


def test_absurd_size_is_refused_before_decoding(tmp_path):
    # A 30000 x 30000 PNG header costs a few KB on disk and 2.7 GB once decoded.
    path = tmp_path / "huge.png"
    Image.new("1", (30000, 30000)).save(path)
    with pytest.raises(ImageError, match="too large|limit"):
        open_image(path)


def test_unreadable_inputs_have_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        open_image(tmp_path / "notes.txt")
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "missing.jpg")
    truncated = _encode(Image.new("RGB", (64, 64), "blue"), "JPEG")[:200]
    with pytest.raises(ImageError):
        open_image(truncated)


def test_find_images_expands_folders_and_globs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.jpg", "a/b/two.PNG", "a/b/skip.txt", "three.jpeg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, "PNG") if not name.endswith("txt") else (tmp_path / name).write_text("x")
    found = find_images([str(tmp_path / "a"), str(tmp_path / "*.jpeg"), str(tmp_path / "missing.jpg")])
    assert [p.replace(str(tmp_path), "") for p in found] == ["/a/b/two.PNG", "/a/one.jpg", "/three.jpeg", "/missing.jpg"]


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:, : w // 2] = (255, 0, 0)  # left half red, right half blue: shows any rotation
    pixels[:, w // 2 :] = (0, 0, 255)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [None, 3, 6, 8])
def test_draft_decoding_keeps_exif_orientation_and_pixels(orientation):
    data = _jpeg((1600, 800), orientation)
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    fast = open_image(data, draft_size=224)
    assert max(fast.size) < max(full.size) and min(fast.size) >= 224  # decoded small: 1/2, 1/4 or 1/8 scale
    assert (fast.size[0] > fast.size[1]) == (full.size[0] > full.size[1])  # upright as the full decode
    reference = np.asarray(full.resize(fast.size, Image.BILINEAR), np.float32)
    assert np.abs(np.asarray(fast, np.float32) - reference).mean() < 4


# ---- the encoder's views of a photo ----------------------------------------------------------------------------

PLAIN = Preprocess(32, (127.0,) * 3, (128.0,) * 3)
CROP = Preprocess(32, (127.0,) * 3, (128.0,) * 3, concept_crop=True)
GREEN, BLUE = (0, 200, 0), (0, 0, 200)


def banded(width: int = 96, height: int = 64) -> Image.Image:
    """A wide photo: a green centre square between blue side bands."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(GREEN, ((width - height) // 2, 0, (width + height) // 2, height))
    return image


def colour(pixels: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Whether each pixel of a (3, S, S) view is ``rgb``."""
    want = (np.asarray(rgb, np.float32)[:, None, None] - 127.0) / 128.0
    return np.isclose(pixels, want, atol=0.02).all(0)


def test_concept_crop_gives_the_classifier_the_photos_centre_and_the_grid_the_whole_photo():
    whole, centre = CROP.load(_encode(banded(), "PNG"))
    assert colour(whole, BLUE)[:, :4].all() and colour(whole, GREEN)[:, 14:18].all()  # squeezed: bands kept
    assert colour(centre, GREEN)[:, 1:-1].all() and not colour(centre, BLUE).any()  # the centre alone, full size
    # (its outermost columns blend a little of the bands: the resize's filter reads beyond the square)
    # The grid's view is the whole photo stretched, as the decoders were trained: exactly so once the shorter side
    # is the encoder's size (a larger photo is first brought down to it, keeping its aspect: ``reduce``).
    np.testing.assert_array_equal(PLAIN.load(banded(48, 32)), CROP.load(banded(48, 32))[:1])


def test_views_of_a_batch_stay_together_and_per_photo_takes_each_photos_own():
    photos = [banded(), Image.new("RGB", (40, 40), GREEN)]
    pixels = CROP(photos)
    assert pixels.shape == (4, 3, 32, 32) and PLAIN(photos).shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(pixels[:2], CROP.pixels(photos[0]))
    rows = np.arange(4)  # features of rows 0..3: photo 0's views, then photo 1's
    grid, pooled = CROP.per_photo(rows[:, None, None], rows[:, None])
    assert grid.ravel().tolist() == [0, 2] and pooled.ravel().tolist() == [1, 3]
    assert PLAIN.per_photo(rows, rows)[1] is rows


@pytest.mark.parametrize("pre", [PLAIN, CROP], ids=["whole photo", "concept crop"])
@pytest.mark.parametrize("size", [(960, 640), (20, 90), (32, 32)])
def test_a_reduced_picture_gives_the_views_of_the_photo_itself(pre, size):
    """What the web server keeps of an upload while it waits (``reduce``) is enough for every view."""
    photo = banded(*size) if size[0] >= size[1] else banded(*size[::-1]).transpose(Image.Transpose.ROTATE_90)
    small = pre.reduce(photo)
    assert min(small.size) <= max(pre.size, min(photo.size)) and (pre.concept_crop or small.size == (32, 32))
    np.testing.assert_array_equal(pre.pixels(small), pre.pixels(photo))


def test_a_preprocessing_saved_before_concept_crop_reads_the_whole_photo():
    old = {"size": 224, "mean": [127.0] * 3, "std": [128.0] * 3}
    assert Preprocess.from_dict(old) == Preprocess(224, (127.0,) * 3, (128.0,) * 3)
    assert Preprocess.from_dict(old).views == 1
    assert Preprocess.from_dict(CROP.to_dict()) == CROP
