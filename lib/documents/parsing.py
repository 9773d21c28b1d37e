"""Turn uploaded bytes into text pages: PDF, DOCX, TXT, Markdown, HTML, CSV; bad files get clear errors."""

from __future__ import annotations

import codecs
import csv
import io
import logging
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from lib.documents.ocr import OcrError, OcrSettings, OcrTimeout, ocr_available, ocr_pdf_pages

SUPPORTED = {
    ".pdf": "PDF",
    ".docx": "DOCX",
    ".txt": "text",
    ".md": "Markdown",
    ".markdown": "Markdown",
    ".html": "HTML",
    ".htm": "HTML",
    ".csv": "CSV",
}
MB = 2**20  # one megabyte wherever the workbench counts them, as Streamlit's server.maxUploadSize does
MAX_UNZIPPED_BYTES = 200 * MB  # a DOCX that inflates beyond this is refused as a zip bomb
MAX_ZIP_RATIO = 200
# Byte order marks, longest first (a UTF-32 LE mark starts like a UTF-16 LE one); Windows Notepad's "Unicode" is
# UTF-16 LE with a mark.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
]


class ParseError(ValueError):
    """A file cannot be indexed; the message says why and what to do."""


@dataclass(frozen=True)
class Page:
    """Text of one page (number from 1), or of a whole file without pages (number None); `ocr` if read by OCR."""

    number: int | None
    text: str
    ocr: bool = False


def format_mb(n_bytes: float) -> str:
    """`50`, `0.5`, `53.5`: a size in MB (2**20 bytes) with at most two decimals."""
    return f"{n_bytes / MB:.2f}".rstrip("0").rstrip(".")


def parse_file(
    name: str,
    data: bytes,
    max_bytes: int,
    ocr: OcrSettings | None = None,
    on_ocr_page: Callable[[int, int], None] | None = None,
) -> list[Page]:
    """Pages of text in `data`; ParseError for empty, oversized, corrupt, encrypted or text-less files.

    With `ocr` (and Tesseract installed), PDF pages without a text layer are read by OCR; `on_ocr_page(done,
    total)` follows that work.
    """
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED and _plain_text(data):
        suffix = ".txt"  # LICENSE, README, notes-2.0: text files whatever their name says
    if suffix not in SUPPORTED:
        raise ParseError(
            f"{name}: {suffix or 'files without an extension'} is not supported. "
            f"Upload {', '.join(sorted(set(SUPPORTED.values())))}."
        )
    if not data:
        raise ParseError(f"{name} is empty.")
    if len(data) > max_bytes:
        raise ParseError(
            f"{name} is {len(data) / MB:.1f} MB, over the {format_mb(max_bytes)} MB limit. "
            "Split it, or ask an admin to raise WORKBENCH_MAX_FILE_MB."
        )
    if suffix == ".pdf":
        return _pdf(name, data, ocr, on_ocr_page)
    parser = {".docx": _docx, ".html": _html, ".htm": _html, ".csv": _csv}.get(suffix, _text)
    pages = [p for p in parser(name, data) if p.text.strip()]
    if not pages:
        raise ParseError(f"{name} contains no text.")
    return pages


def _bom(data: bytes) -> tuple[str, str] | None:
    """(codec, label) of the byte order mark `data` starts with, if any."""
    return next(((codec, label) for bom, codec, label in _BOMS if data.startswith(bom)), None)


def _plain_text(data: bytes) -> bool:
    if _bom(data):
        try:
            decode_text("", data)
        except ParseError:
            return False
        return True
    if not data or b"\x00" in data[:8192]:
        return False
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > 65530  # a character cut at the sample's end is still text
    return True


def decode_text(name: str, data: bytes) -> str:
    """Text from bytes: as its byte order mark says (UTF-8, -16, -32), else UTF-8, else the detected encoding.

    Binary is refused.
    """
    marked = _bom(data)
    if marked:
        codec, label = marked
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"{name} is marked as {label} text but is damaged at byte {exc.start}. Open it in a text "
                "editor, save it again (as UTF-8 if you can) and upload that."
            ) from exc
        if not _looks_like_text(text[:8192]):
            raise ParseError(f"{name} looks like a binary file, not text. Upload it in its own format (PDF, DOCX…).")
        return text
    if b"\x00" in data[:8192]:
        raise ParseError(f"{name} looks like a binary file, not text. Upload it in its own format (PDF, DOCX…).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError(f"{name} is not readable text in any known encoding. Save it as UTF-8 and upload again.")
    return str(best)


def _looks_like_text(sample: str) -> bool:
    """No NULs and at most 1% other control characters (binary that happens to start with a BOM is not text)."""
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\n\r\f\v")
    return "\x00" not in sample and controls <= len(sample) // 100


def _text(name: str, data: bytes) -> list[Page]:
    return [Page(None, decode_text(name, data))]


def _html(name: str, data: bytes) -> list[Page]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(name, data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return [Page(None, soup.get_text("\n", strip=True))]


def _csv(name: str, data: bytes) -> list[Page]:
    text = decode_text(name, data)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ParseError(f"{name} is not a valid CSV file: {exc}.") from exc
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    lines = (
        ["; ".join(f"{h}: {v}" for h, v in zip(header, r) if v.strip()) for r in body] if body else [", ".join(header)]
    )
    return [Page(None, "\n".join(lines))]


def _pdf(name: str, data: bytes, ocr: OcrSettings | None, on_ocr_page: Callable[[int, int], None] | None) -> list[Page]:
    """Text pages of a PDF; pages without a text layer are read by OCR when it is available."""
    from pypdf.errors import PdfReadError

    pages: list[Page] = []
    damaged: list[int] = []
    no_text_layer: list[tuple[int, float]] = []  # (number, long side in points): what OCR would read
    try:
        for number, page in enumerate(_open_pdf(name, data).pages, start=1):
            kind, text = _read_page(page)
            if kind == "text":
                pages.append(Page(number, text))
            elif kind == "damaged":
                damaged.append(number)
            elif kind == "no text layer":
                no_text_layer.append((number, _long_side(page)))
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise _unreadable_pdf(name) from exc
    if damaged:
        shown = [str(n) for n in damaged[:5]] + ([f"{len(damaged) - 5} more"] if len(damaged) > 5 else [])
        listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        raise ParseError(
            f"{name}: the content of page{'s' if len(damaged) > 1 else ''} {listed} is damaged and cannot be read. Open the file in a PDF viewer, save or "
            "print it as a new PDF, and upload that."
        )
    ocr_ran = bool(no_text_layer) and ocr_available(ocr)
    if ocr_ran:
        assert ocr is not None  # ocr_available checked it
        pages += _ocr_pages(name, data, no_text_layer, ocr, on_ocr_page)
        pages.sort(key=lambda p: p.number or 0)
    if pages:
        return pages
    if ocr_ran:
        raise ParseError(
            f"{name} has no text layer, and OCR found no text on its {len(no_text_layer)} page(s): it is probably "
            "a blank or unreadable scanned document."
        )
    if no_text_layer:
        raise ParseError(
            f"{name} has no extractable text: it is probably a scanned document. Run it through "
            "OCR first (e.g. ocrmypdf) and upload the result."
        )
    raise ParseError(f"{name} contains no text.")


def _open_pdf(name: str, data: bytes) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise FileNotDecryptedError("password")
            except (FileNotDecryptedError, NotImplementedError, DependencyError) as exc:
                raise ParseError(f"{name} is password-protected. Remove the password and upload it again.") from exc
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise _unreadable_pdf(name) from exc
    return reader


def _unreadable_pdf(name: str) -> ParseError:
    return ParseError(
        f"{name} is not a readable PDF (it may be damaged or incomplete). Open it in a PDF "
        "viewer, save a fresh copy, and upload that."
    )


def _read_page(page: Any) -> tuple[str, str]:
    """(kind, text) of a page: `text`, `damaged` (its content cannot be decoded), `no text layer` (it draws
    something, e.g. a scanned image, but has no text) or `blank`."""
    with _pypdf_warnings() as warnings:
        try:
            text = page.extract_text() or ""
            content = page.get_contents()
            draws = content is not None and bool(content.get_data().strip())
        except Exception:  # pypdf raises many kinds for a page it cannot decode; the caller names the page
            return "damaged", ""
    if text.strip():
        return "text", text
    if warnings:  # pypdf logs, and carries on with nothing, when it cannot decode a content stream
        return "damaged", ""
    return ("no text layer", "") if draws else ("blank", "")


def _long_side(page: Any) -> float:
    try:
        return max(float(page.mediabox.width), float(page.mediabox.height))
    except (KeyError, TypeError, ValueError, AttributeError):
        return 842.0  # A4


class _ThreadWarnings(logging.Handler):
    """pypdf's warnings logged by this thread, except the reader's notes on repaired cross-reference tables."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and not record.name.startswith("pypdf._reader"):
            self.messages.append(record.getMessage())


@contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    handler, logger = _ThreadWarnings(), logging.getLogger("pypdf")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _ocr_pages(
    name: str,
    data: bytes,
    numbers: list[tuple[int, float]],
    ocr: OcrSettings,
    on_page: Callable[[int, int], None] | None,
) -> list[Page]:
    if len(numbers) > ocr.max_pages:
        raise ParseError(
            f"{name} has {len(numbers)} pages without a text layer; the workbench reads at most {ocr.max_pages} "
            "per document by OCR. Split it, run it through OCR first (e.g. ocrmypdf), or ask an admin to raise "
            "WORKBENCH_OCR_MAX_PAGES."
        )
    try:
        texts = ocr_pdf_pages(data, numbers, ocr, on_page)
    except OcrTimeout as exc:
        raise ParseError(
            f"{name}: OCR stopped at page {exc.page} after {ocr.timeout_s:g} s ({exc.done} of {len(numbers)} "
            "scanned pages read). Split it, run it through OCR first (e.g. ocrmypdf), or ask an admin to raise "
            "WORKBENCH_OCR_TIMEOUT_S."
        ) from exc
    except OcrError as exc:
        raise ParseError(f"{name}: {exc}. Run it through OCR first (e.g. ocrmypdf) and upload the result.") from exc
    return [Page(number, text.strip(), ocr=True) for number, text in texts.items() if text.strip()]


def _docx(name: str, data: bytes) -> list[Page]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            inflated = sum(i.file_size for i in z.infolist())
            if inflated > MAX_UNZIPPED_BYTES or inflated > MAX_ZIP_RATIO * max(len(data), 1) + 10_000_000:
                raise ParseError(
                    f"{name} would inflate to {inflated / MB:.0f} MB: refused as a possible zip "
                    "bomb. Save the document again from Word and upload that."
                )
    except zipfile.BadZipFile as exc:
        raise ParseError(
            f"{name} is not a valid DOCX file (a DOCX is a zip archive). Save it again from your word processor."
        ) from exc
    import docx

    try:
        doc = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises many kinds for a broken package
        raise ParseError(
            f"{name} is not a readable DOCX file ({type(exc).__name__}). Save it again from your word processor."
        ) from exc
    from docx.table import Table

    parts: list[str] = []
    for block in doc.iter_inner_content():  # body paragraphs and tables in document order
        if isinstance(block, Table):
            parts.extend(" | ".join(cell.text for cell in row.cells) for row in block.rows)
        else:
            parts.append(block.text)
    return [Page(None, "\n".join(parts))]
