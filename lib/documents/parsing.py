"""Turn uploaded bytes into text pages: PDF, DOCX, TXT, Markdown, HTML, CSV; bad files get clear errors."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

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
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024  # a DOCX that inflates beyond this is refused as a zip bomb
MAX_ZIP_RATIO = 200


class ParseError(ValueError):
    """A file cannot be indexed; the message says why and what to do."""


@dataclass(frozen=True)
class Page:
    """Text of one page (number from 1), or of a whole file without pages (number None)."""

    number: int | None
    text: str


def parse_file(name: str, data: bytes, max_bytes: int) -> list[Page]:
    """Pages of text in `data`; ParseError for empty, oversized, corrupt, encrypted or text-less files."""
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
            f"{name} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit. "
            "Split it, or ask an admin to raise WORKBENCH_MAX_FILE_MB."
        )
    parser = {".pdf": _pdf, ".docx": _docx, ".html": _html, ".htm": _html, ".csv": _csv}.get(suffix, _text)
    pages = [p for p in parser(name, data) if p.text.strip()]
    if not pages:
        if suffix == ".pdf":
            raise ParseError(
                f"{name} has no extractable text: it is probably a scanned document. Run it through "
                "OCR first (e.g. ocrmypdf) and upload the result."
            )
        raise ParseError(f"{name} contains no text.")
    return pages


def _plain_text(data: bytes) -> bool:
    if not data or b"\x00" in data[:8192]:
        return False
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > 65530  # a character cut at the sample's end is still text
    return True


def decode_text(name: str, data: bytes) -> str:
    """Text from bytes: UTF-8 (with or without BOM), else the detected encoding; binary is refused."""
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


def _pdf(name: str, data: bytes) -> list[Page]:
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
        return [Page(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise ParseError(
            f"{name} is not a readable PDF (it may be damaged or incomplete). Open it in a PDF "
            "viewer, save a fresh copy, and upload that."
        ) from exc


def _docx(name: str, data: bytes) -> list[Page]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            inflated = sum(i.file_size for i in z.infolist())
            if inflated > MAX_UNZIPPED_BYTES or inflated > MAX_ZIP_RATIO * max(len(data), 1) + 10_000_000:
                raise ParseError(
                    f"{name} would inflate to {inflated / 1e6:.0f} MB: refused as a possible zip "
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
