"""The front end as plain files, for hosting apart from the API (S3 behind CloudFront).

The same page `cruddur serve` sends, with its settings fixed at build time and the CSP
in a <meta> tag (a bucket sends no such header). Dev sign-in is never offered: it only
exists on the API's own machine.
"""

from __future__ import annotations

import html
from pathlib import Path

from cruddur.config import Settings
from cruddur.web import content_security_policy, page_config
from cruddur.web.assets import STATIC, Assets

CSP_META = '<meta http-equiv="Content-Security-Policy" content="{}">\n  <meta charset'


class InsideThePackage(ValueError):
    """FOLDER is the package's own page folder, or inside it."""


class NotABuildFolder(ValueError):
    """FOLDER holds other files and no earlier build of the page."""


# In every page (index.html), served or built: how an earlier build is told apart.
PAGE_MARK = b'<meta name="cruddur-config"'


def _refuse_others_files(folder: Path) -> None:
    """A folder that holds files and no earlier build is refused: `web build .` wrote the
    page into the checkout, `web build /` into /, and a hand-written index.html there was
    replaced without a word."""
    if not folder.is_dir():
        return
    # Hidden files (a .gitkeep that keeps an empty dist/ in git) are no one's page.
    entries = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
    if not entries:
        return
    index = folder / "index.html"
    try:
        earlier = index.is_file() and PAGE_MARK in index.read_bytes()
    except OSError:
        earlier = False
    if not earlier:
        shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        raise NotABuildFolder(
            f"{folder} holds other files ({shown}) and no earlier build of the page: its "
            "index.html and assets/ would go in among them"
        )


def build(settings: Settings, folder: Path, *, force: bool = False) -> tuple[Path, int]:
    """Writes index.html and assets/<fingerprint>/…; returns the index and the file count.

    A link in FOLDER (index.html, an asset) is replaced by the file, never written
    through: it wrote the page over whatever file the link named."""
    package = Path(str(STATIC)).resolve()
    where = folder.resolve()
    if where == package or package in where.parents:
        # Written there, the page replaced the template (index.html) every later page
        # and `cruddur serve` are made from, its placeholders gone.
        raise InsideThePackage(f"{folder} is the page's own source folder ({package})")
    if not force:
        _refuse_others_files(folder)
    assets = Assets()
    page = assets.page(page_config(settings, dev_sign_in=False))
    policy = content_security_policy(settings, header=False)
    page = page.replace(
        "<meta charset", CSP_META.format(html.escape(policy, quote=False).replace('"', "&quot;")), 1
    )
    target = folder / assets.prefix.strip("/")
    target.mkdir(parents=True, exist_ok=True)
    for name, asset in assets.files.items():
        _write(target / name, asset.body)
    index = folder / "index.html"
    _write(index, page.encode())
    return index, len(assets.files) + 1


def _write(path: Path, data: bytes) -> None:
    if path.is_symlink():
        path.unlink()
    path.write_bytes(data)
