"""Every supported format becomes text pages; page numbers survive for PDFs."""

import codecs
import tomllib
from pathlib import Path

import pytest
from files import make_blank_pdf, make_docx, make_pdf, make_scanned_pdf

from lib.core.settings import load_settings
from lib.documents.parsing import ParseError, parse_file
from lib.services import chunking_from

MB = 2**20
NOTES = "Café notes\r\nThe VPN password rotates every 90 days — ask Zoë.\r\n"


def test_html_keeps_visible_text_and_drops_scripts_and_styles():
    html = b"<html><head><style>p{}</style><script>alert('x')</script></head><body><h1>Title</h1><p>Body text.</p></body></html>"
    [page] = parse_file("page.html", html, MB)
    assert page.number is None and "Title" in page.text and "Body text." in page.text
    assert "alert" not in page.text and "p{}" not in page.text


def test_csv_rows_become_labelled_lines():
    [page] = parse_file("staff.csv", b"name,room\nAda,101\nBob,\n", MB)
    assert page.text.splitlines() == ["name: Ada; room: 101", "name: Bob"]


def test_markdown_and_text_with_a_bom_are_read_as_utf8():
    [page] = parse_file("notes.md", "\ufeff# Notes\n\nCafé opens at 8.".encode("utf-8"), MB)
    assert page.text.startswith("# Notes") and "Café" in page.text


@pytest.mark.parametrize(
    "encoding, bom",
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),  # Windows Notepad's "Unicode"
        ("utf-16-be", codecs.BOM_UTF16_BE),  # Notepad's "Unicode big endian"
        ("utf-8", codecs.BOM_UTF8),  # Notepad's "UTF-8 with BOM"
        ("utf-32-le", codecs.BOM_UTF32_LE),
    ],
)
@pytest.mark.parametrize("name", ["notes.txt", "notes.csv", "NOTES"])
def test_text_with_a_byte_order_mark_is_decoded_not_refused_as_binary(encoding, bom, name):
    data = bom + NOTES.encode(encoding)
    [page] = parse_file(name, data, MB)
    assert "Café notes" in page.text and "rotates every 90 days — ask Zoë." in page.text
    assert "\ufeff" not in page.text and "\x00" not in page.text


def test_binary_that_starts_with_a_byte_order_mark_is_still_refused():
    with pytest.raises(ParseError, match="binary file"):
        parse_file("icon.txt", codecs.BOM_UTF16_LE + bytes([40, 0, 1, 0, 2, 0, 0, 0, 255, 255]) * 400, MB)


def test_text_marked_utf16_but_cut_in_half_says_it_is_damaged():
    data = codecs.BOM_UTF16_LE + "Half a character".encode("utf-16-le") + b"\x00\xd8"  # a lone surrogate
    with pytest.raises(ParseError, match="marked as UTF-16 text but is damaged"):
        parse_file("notes.txt", data, MB)


def test_a_pdf_with_a_damaged_content_stream_names_the_page_instead_of_calling_it_a_scan():
    with pytest.raises(ParseError, match="the content of page 2 is damaged and cannot be read") as caught:
        parse_file("report.pdf", make_pdf(["one", "two", "three"], damaged=frozenset({2})), MB)
    assert "scanned" not in str(caught.value) and "OCR" not in str(caught.value)
    with pytest.raises(ParseError, match="the content of pages 1, 2 and 3 is damaged"):
        parse_file("report.pdf", make_pdf(["one", "two", "three"], damaged=frozenset({1, 2, 3})), MB)


@pytest.mark.parametrize("data", [make_scanned_pdf(["Scanned text"]), make_blank_pdf()])
def test_a_pdf_that_draws_pages_without_a_text_layer_is_the_scanned_case(data):
    with pytest.raises(ParseError, match="probably a scanned document"):
        parse_file("scan.pdf", data, MB)  # OCR off here: tests/test_ocr.py reads them


def test_the_size_limit_says_the_number_the_admin_set_in_one_unit():
    limit = chunking_from(load_settings(env={"WORKBENCH_MAX_FILE_MB": "50"})).max_file_bytes
    with pytest.raises(ParseError, match=r"big\.txt is 53\.5 MB, over the 50 MB limit\."):
        parse_file("big.txt", b"x" * int(53.5 * MB), limit)
    with pytest.raises(ParseError, match=r"is 0\.8 MB, over the 0\.5 MB limit"):
        parse_file(
            "half.txt",
            b"x" * int(0.8 * MB),
            chunking_from(load_settings(env={"WORKBENCH_MAX_FILE_MB": "0.5"})).max_file_bytes,
        )


def test_a_file_streamlit_accepts_is_not_refused_as_too_big():
    """Streamlit's server.maxUploadSize counts MB of 2**20 bytes; the default limits agree to the byte."""
    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    largest_upload = config["server"]["maxUploadSize"] * 1024 * 1024  # as streamlit's upload route computes it
    limit = chunking_from(load_settings(env={})).max_file_bytes
    assert limit == largest_upload
    assert parse_file("max.txt", b"x" * largest_upload, limit)[0].text.startswith("xxx")
    with pytest.raises(ParseError, match="over the 50 MB limit"):
        parse_file("max.txt", b"x" * (largest_upload + 1), limit)


def test_pdf_pages_keep_their_numbers_and_docx_tables_are_read():
    pages = parse_file("a.pdf", make_pdf(["one", "", "three"]), MB)
    assert [(p.number, p.text.strip()) for p in pages] == [(1, "one"), (3, "three")]
    assert "Hello" in parse_file("a.docx", make_docx(["Hello"]), MB)[0].text


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("empty.csv", b"", "is empty"),
        ("spaces.txt", b"   \n\n  ", "contains no text"),
        ("tiny-limit.txt", b"x" * 11, "over the"),
    ],
)
def test_empty_and_oversized_files_are_refused_with_a_reason(name, data, words):
    with pytest.raises(ParseError, match=words):
        parse_file(name, data, 10)


def test_docx_tables_stay_where_they_are_between_paragraphs():
    import io

    import docx

    document = docx.Document()
    document.add_paragraph("Prices for 2024 are below.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Plan", "Price"), ("Pro", "20 EUR")]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    document.add_paragraph("Prices for 2025 follow later.")
    buf = io.BytesIO()
    document.save(buf)
    [page] = parse_file("prices.docx", buf.getvalue(), MB)
    assert [line for line in page.text.splitlines() if line] == [
        "Prices for 2024 are below.",
        "Plan | Price",
        "Pro | 20 EUR",
        "Prices for 2025 follow later.",
    ]
