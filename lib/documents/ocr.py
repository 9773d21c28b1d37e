"""OCR of PDF pages without a text layer, offline: poppler's pdftoppm renders a page, Tesseract reads it.

Both are Debian packages (`make system-deps`); nothing is downloaded. The work per document is bounded by a page
count (checked before any page is read) and a time limit across all its pages.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SIDE_PX = 4200  # long side of a rendered page: 300 dpi for A4 and Letter, less for posters (bounds memory)


@dataclass(frozen=True)
class OcrSettings:
    """Whether and how pages without a text layer are read by OCR."""

    enabled: bool = True  # off: a scan is refused with a message to OCR it first
    languages: str = "eng+deu+fra+spa+ita+nld"  # Tesseract languages; those not installed are skipped
    max_pages: int = 100  # a document with more pages to OCR is refused before any is read
    timeout_s: float = 900  # OCR of one document stops (and the file fails) after this long
    dpi: int = 300  # rendering resolution (Tesseract reads best at 300)
    tesseract: str = "tesseract"  # commands, found on PATH
    pdftoppm: str = "pdftoppm"


class OcrError(RuntimeError):
    """OCR could not finish a document; the message says why."""


class OcrTimeout(OcrError):
    """The document's OCR time ran out at `page`, after `done` of its scanned pages were read."""

    def __init__(self, page: int, done: int):
        super().__init__(f"OCR ran out of time at page {page}")
        self.page, self.done = page, done


def ocr_available(settings: OcrSettings | None) -> bool:
    """True when OCR is switched on and both its programs are installed."""
    return bool(settings and settings.enabled and shutil.which(settings.tesseract) and shutil.which(settings.pdftoppm))


def installed_languages(tesseract: str = "tesseract") -> set[str]:
    """The Tesseract language packs installed (`eng`, `deu`, …)."""
    out = subprocess.run([tesseract, "--list-langs"], capture_output=True, text=True, timeout=30, check=True)
    return {line.strip() for line in out.stdout.splitlines()[1:] if line.strip()} - {"osd"}


def _languages(settings: OcrSettings) -> str:
    installed = installed_languages(settings.tesseract)
    wanted = [lang for lang in settings.languages.split("+") if lang.strip()]
    chosen = [lang for lang in wanted if lang in installed]
    if len(chosen) < len(wanted):
        log.warning("OCR languages not installed, skipped: %s", sorted(set(wanted) - installed))
    if not chosen:
        raise OcrError(
            f"none of the OCR languages {settings.languages!r} is installed (installed: "
            f"{', '.join(sorted(installed)) or 'none'}); install tesseract-ocr-eng or set WORKBENCH_OCR_LANGUAGES"
        )
    return "+".join(chosen)


def ocr_pdf_pages(
    data: bytes,
    pages: Sequence[tuple[int, float]],
    settings: OcrSettings,
    on_page: Callable[[int, int], None] | None = None,
) -> dict[int, str]:
    """Text of the given pages of a PDF, each given as (number from 1, long side in points), read by OCR.

    OcrTimeout when the document's time runs out, OcrError when a page cannot be rendered or read.
    """
    deadline = time.monotonic() + settings.timeout_s
    languages = _languages(settings)
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one core per OCR job: the app's requests keep the other
    texts: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="workbench-ocr-") as tmp:
        pdf = Path(tmp) / "document.pdf"
        pdf.write_bytes(data)
        for done, (number, long_side_pt) in enumerate(pages):
            dpi = max(1, min(settings.dpi, int(MAX_SIDE_PX * 72 / max(long_side_pt, 1.0))))
            image = Path(tmp) / f"page-{number}"
            render = [settings.pdftoppm, "-r", str(dpi), "-gray", "-png", "-singlefile"]
            render += ["-f", str(number), "-l", str(number), str(pdf), str(image)]
            _run(render, deadline, number, done, env, f"page {number} could not be rendered for OCR")
            read = [settings.tesseract, f"{image}.png", "stdout", "-l", languages]
            texts[number] = _run(read, deadline, number, done, env, f"OCR could not read page {number}")
            Path(f"{image}.png").unlink(missing_ok=True)
            if on_page:
                on_page(done + 1, len(pages))
    return texts


def _run(command: list[str], deadline: float, page: int, done: int, env: dict[str, str], failure: str) -> str:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OcrTimeout(page, done)
    try:
        out = subprocess.run(command, capture_output=True, timeout=remaining, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OcrTimeout(page, done) from exc
    if out.returncode != 0:
        detail = out.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {out.returncode}"]
        raise OcrError(f"{failure} ({detail[0][:200]})")
    return out.stdout.decode("utf-8", "replace")
