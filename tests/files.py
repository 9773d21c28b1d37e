"""Builders of real test files: PDFs with pages, encrypted, damaged, blank and scanned PDFs, DOCX, zip bombs."""

from __future__ import annotations

import io
import zipfile
import zlib


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str], damaged: frozenset[int] = frozenset()) -> bytes:
    """A valid PDF with one text page per string (Helvetica; each line of a string is a text line).

    The content streams of the `damaged` pages (numbers from 1) are Flate data cut off and overwritten with junk,
    as a bad disk sector or a broken transfer leaves them; the file's structure stays intact.
    """
    objects: list[bytes] = []
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        lines = "".join(f"({_escape(line)}) Tj T* " for line in text.split("\n"))
        stream = f"BT /F1 11 Tf 14 TL 50 780 Td {lines}ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        if i + 1 in damaged:
            stream = zlib.compress(stream)[:6] + b"\x13\x37 this is not deflate data \xff\xfe" * 3
            objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
        else:
            objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{num} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_encrypted_pdf(text: str = "Secret page", password: str = "hunter2") -> bytes:
    """A PDF that needs a password to open."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf([text]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "!", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def make_blank_pdf(pages: int = 2) -> bytes:
    """A PDF whose pages carry no text (like a scan without OCR)."""
    return make_pdf([""] * pages)


def make_scanned_pdf(pages: list[str], dpi: int = 150) -> bytes:
    """A PDF of page images without a text layer, as a scanner makes it: each string drawn on an A4 image."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=dpi // 4)  # Pillow's own font: no system font needed; ~13 pt
    images = []
    for text in pages:
        image = Image.new("L", (dpi * 827 // 100, dpi * 1169 // 100), 255)
        draw = ImageDraw.Draw(image)
        for n, line in enumerate(text.split("\n")):
            draw.text((dpi * 2 // 3, dpi + n * dpi // 2), line, fill=0, font=font)
        images.append(image)
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return buf.getvalue()


def make_docx(paragraphs: list[str]) -> bytes:
    """A real DOCX made with python-docx."""
    import docx

    doc = docx.Document()
    for p in paragraphs:
        doc.add_paragraph(p)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def make_zip_bomb_docx(inflated_mb: int = 300) -> bytes:
    """A small zip named .docx whose one member inflates to `inflated_mb` MB of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(inflated_mb):
                member.write(block)
    return buf.getvalue()
