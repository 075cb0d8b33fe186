"""The front end's files, read once, fingerprinted, and the page that loads them.

All assets share one fingerprint (a digest of every file as served), so they live
under `/assets/<fingerprint>/`: the ES modules import each other by relative names and
need no rewriting, and any change to any file gives every URL a new name, which lets
browsers keep them for a year (`immutable`).

Scripts and the style sheet are sent without their comments and spacing (rJSmin and
rCSSmin, once at start-up): the files keep the comments that explain them, and the
page stays well under its 60 kB budget (README, "How it is built").
"""

from __future__ import annotations

import hashlib
import html
import json
import mimetypes
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

STATIC = files("cruddur.web").joinpath("static")
PAGE_TEMPLATE = "index.html"
# The modules the page needs at once; preloading them avoids an import waterfall.
MODULES = (
    "main.js",
    "api.js",
    "auth.js",
    "cognito.js",
    "views.js",
    "dom.js",
    "timefmt.js",
    "drafts.js",
)
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


class Assets:
    def __init__(self) -> None:
        self.files: dict[str, Asset] = {}
        digest = hashlib.sha256()
        for entry in sorted(STATIC.iterdir(), key=lambda e: e.name):
            if entry.name == PAGE_TEMPLATE or not entry.is_file():
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            body = _minified(suffix, entry.read_bytes())
            kind = TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "text/plain"
            self.files[entry.name] = Asset(body, kind)
            digest.update(entry.name.encode() + b"\0" + body + b"\0")
        self.template = STATIC.joinpath(PAGE_TEMPLATE).read_text()
        digest.update(self.template.encode())
        self.fingerprint = digest.hexdigest()[:16]
        self.prefix = f"/assets/{self.fingerprint}/"

    def page(self, config: dict[str, Any]) -> str:
        """index.html with the asset URLs and the page's settings (HTML-escaped JSON in a
        meta tag: the CSP allows no inline script)."""
        preloads = "\n    ".join(
            f'<link rel="modulepreload" href="{self.prefix}{name}">' for name in MODULES[1:]
        )
        return (
            self.template.replace("{{assets}}", self.prefix)
            .replace("{{modulepreloads}}", preloads)
            .replace("{{config}}", html.escape(json.dumps(config, separators=(",", ":"))))
        )

    def total_bytes(self) -> int:
        return len(self.page({}).encode()) + sum(len(a.body) for a in self.files.values())


def _minified(suffix: str, body: bytes) -> bytes:
    """A script or style sheet as sent: comments and spacing removed; others as they are.
    (rJSmin leaves template literals as they are, and the modules have no nested ones.)"""
    if suffix == ".js":
        import rjsmin

        return rjsmin.jsmin(body.decode()).encode()
    if suffix == ".css":
        import rcssmin

        return rcssmin.cssmin(body.decode()).encode()
    return body


_this_server: Assets | None = None


def read_before_forking() -> None:
    """Read the files once in the server's main process, before it forks its workers.
    Each worker read them itself: one started in place of a dead one (a crash, the OOM
    killer) after the files had changed on disk (a `git pull` under `bin/run`) served
    other files under another fingerprint, and a page from one worker asked the other
    for its assets and got 404s, stuck at "Loading…"."""
    global _this_server
    _this_server = Assets()


def for_this_server() -> Assets:
    """The files read before the fork; read now where none were (the test client, a
    server that spawns its workers rather than forking them)."""
    return _this_server or Assets()
