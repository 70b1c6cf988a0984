"""Thumbnails of the tutorial notebooks, taken from their own committed outputs.

At ``builder-inited`` every notebook in ``notebooks/`` (next to ``conf.py``, the docs link it) gives its last
image output (``image/png`` or ``image/jpeg``: the figure it ends on) as
``_static/thumbnails/<notebook name>.png``, at most ``THUMBNAIL_WIDTH`` pixels wide. ``tutorials.md`` shows
them as the cards' images. Nothing is drawn by hand and nothing is executed: a notebook re-run with new
figures gets a new thumbnail at the next build. A notebook without any image output is a warning (which
the docs test and ``fail_on_warning`` turn into a failure). The folder is git-ignored.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from sphinx.util import logging

if TYPE_CHECKING:
    from sphinx.application import Sphinx

logger = logging.getLogger(__name__)

THUMBNAIL_DIR = Path("_static") / "thumbnails"
THUMBNAIL_WIDTH = 480
IMAGE_TYPES = ("image/png", "image/jpeg")


def last_image(notebook: Path) -> bytes | None:
    """The bytes of the last ``image/png`` or ``image/jpeg`` output of ``notebook``, ``None`` without one."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = None
    for cell in cells:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            data = output.get("data", {})
            for mime in IMAGE_TYPES:
                if mime in data:
                    text = data[mime]
                    found = base64.b64decode("".join(text) if isinstance(text, list) else text)
                    break
    return found


def write_thumbnail(image: bytes, target: Path, width: int = THUMBNAIL_WIDTH) -> None:
    """Write ``image`` (PNG or JPEG bytes) to ``target`` as a PNG at most ``width`` pixels wide."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    if not target.is_file() or target.read_bytes() != data:  # unchanged files keep their time stamp
        target.write_bytes(data)


def make_thumbnails(app: Sphinx) -> None:
    """Write one thumbnail per notebook of ``notebooks/`` into ``_static/thumbnails/``."""
    srcdir = Path(app.srcdir)
    out = srcdir / THUMBNAIL_DIR
    out.mkdir(parents=True, exist_ok=True)
    for notebook in sorted((srcdir / "notebooks").glob("*.ipynb")):
        image = last_image(notebook)
        if image is None:
            logger.warning(
                "notebook %s has no image output to take its tutorials thumbnail from; run it with its figures",
                notebook.name,
                type="aestetik",
                subtype="thumbnail",
            )
            continue
        write_thumbnail(image, out / f"{notebook.stem}.png")


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the thumbnail step."""
    app.connect("builder-inited", make_thumbnails)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
