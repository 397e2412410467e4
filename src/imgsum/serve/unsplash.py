"""Sample photos: a random one from the Unsplash API when a key is set, else (or when Unsplash fails) one from
the gallery shipped inside the package, so that "Load sample image" always works, offline too.

Unsplash's API guidelines are followed: the image is fetched from the URL the API returned, the photographer
and Unsplash are credited with links carrying ``utm_source``/``utm_medium=referral``, and saving a photo
triggers its ``download_location``.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlencode, urlsplit

import httpx

logger = logging.getLogger(__name__)

GALLERY_PACKAGE = "imgsum"
GALLERY_FOLDER = ("assets", "samples")


class UnsplashError(Exception):
    """Unsplash could not give a photo; the message says what went wrong."""


@dataclass
class Attribution:
    text: str  # plain text, e.g. "Photo by Jane Doe on Unsplash"
    photographer: str | None = None
    photographer_url: str | None = None
    photo_url: str | None = None
    source_url: str | None = None  # https://unsplash.com/?utm_source=... for Unsplash photos
    licence: str | None = None


@dataclass
class Photo:
    data: bytes
    filename: str
    source: str  # "unsplash" or "gallery"
    attribution: Attribution | None
    download_location: str | None = None  # Unsplash: to be called when the photo is saved
    description: str | None = None


def with_utm(url: str, app_name: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urlencode({'utm_source': app_name, 'utm_medium': 'referral'})}"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Client-ID {key}", "Accept-Version": "v1"}


async def random_unsplash_photo(client: httpx.AsyncClient, api_url: str, key: str, app_name: str,
                                max_bytes: int) -> Photo:
    """GET /photos/random, then the photo itself; any failure is an :class:`UnsplashError`."""
    try:
        response = await client.get(f"{api_url.rstrip('/')}/photos/random",
                                    params={"orientation": "landscape", "content_filter": "high"},
                                    headers=_auth(key))
    except httpx.HTTPError as err:
        raise UnsplashError(f"cannot reach Unsplash: {type(err).__name__} {err}".strip()) from err
    if response.status_code != 200:
        raise UnsplashError(f"Unsplash answered HTTP {response.status_code}: {response.text[:200].strip()}")
    try:
        meta = response.json()
        url = meta["urls"]["regular"]
        user = meta["user"]
        name = str(user["name"])
        profile = str(user["links"]["html"])
        page = str(meta["links"]["html"])
        download_location = meta["links"].get("download_location")
    except (ValueError, KeyError, TypeError) as err:
        raise UnsplashError(f"Unsplash's answer is not a photo description ({type(err).__name__}: {err})") from err
    if urlsplit(url).scheme not in ("http", "https"):
        raise UnsplashError(f"Unsplash gave an image URL that is not http(s): {url[:100]}")
    data = await _download(client, url, max_bytes)
    attribution = Attribution(text=f"Photo by {name} on Unsplash", photographer=name,
                              photographer_url=with_utm(profile, app_name), photo_url=with_utm(page, app_name),
                              source_url=with_utm("https://unsplash.com/", app_name), licence="Unsplash License")
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", str(meta.get("id", "photo")))[:40] or "photo"
    return Photo(data, f"unsplash-{slug}.jpg", "unsplash", attribution, download_location,
                 meta.get("alt_description") or meta.get("description"))


async def _download(client: httpx.AsyncClient, url: str, max_bytes: int) -> bytes:
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != 200:
                raise UnsplashError(f"the Unsplash image answered HTTP {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise UnsplashError(f"the Unsplash image is larger than {max_bytes:,} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as err:
        raise UnsplashError(f"cannot download the Unsplash image: {type(err).__name__} {err}".strip()) from err
    return b"".join(chunks)


async def track_download(client: httpx.AsyncClient, download_location: str, key: str) -> None:
    """Tells Unsplash that a photo was saved (its API terms ask for it); a failure is only logged."""
    try:
        response = await client.get(download_location, headers=_auth(key))
        if response.status_code != 200:
            logger.warning("Unsplash download tracking answered HTTP %d", response.status_code)
    except httpx.HTTPError as err:
        logger.warning("Unsplash download tracking failed: %s", err)


def gallery_names() -> list[str]:
    folder = resources.files(GALLERY_PACKAGE).joinpath(*GALLERY_FOLDER)
    return sorted(p.name for p in folder.iterdir() if p.name.lower().endswith((".jpg", ".jpeg", ".png")))


def gallery_credits() -> dict[str, Attribution]:
    """Credits read from the gallery's README table (``| file | source | licence |``)."""
    readme = resources.files(GALLERY_PACKAGE).joinpath(*GALLERY_FOLDER, "README.md")
    credits: dict[str, Attribution] = {}
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return credits
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].lower().endswith((".jpg", ".jpeg", ".png")):
            credits[cells[0]] = Attribution(text=f"{cells[1]} ({cells[2]})", licence=cells[2])
    return credits


def gallery_photo(rng: random.Random | None = None) -> Photo:
    """A random photo from the gallery shipped with the package."""
    names = gallery_names()
    if not names:
        raise UnsplashError("the sample gallery is missing from the installation")
    name = (rng or random).choice(names)
    data = resources.files(GALLERY_PACKAGE).joinpath(*GALLERY_FOLDER, name).read_bytes()
    return Photo(data, name, "gallery", gallery_credits().get(name))
