"""Every supported format becomes text pages; page numbers survive for PDFs."""

import pytest
from files import make_docx, make_pdf

from lib.documents.parsing import ParseError, parse_file

MB = 10**6


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
