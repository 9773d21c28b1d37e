"""Scanned PDFs are read by OCR (Tesseract, offline) in the indexing job, bounded per document, and cited as OCR."""

from __future__ import annotations

import io

import pytest
from files import make_pdf, make_scanned_pdf

from lib.core.settings import load_settings
from lib.documents.citations import Source
from lib.documents.indexing import get_collection
from lib.documents.ocr import OcrSettings, ocr_available
from lib.documents.parsing import ParseError, parse_file
from lib.documents.retrieval import RetrievalSettings
from lib.services import Services

MB = 2**20
HOLIDAY = "Holidays\nEvery employee gets 28 days of paid holiday per year.\nUnused days expire in March."
needs_ocr = pytest.mark.skipif(
    not ocr_available(OcrSettings()), reason="Tesseract or pdftoppm is missing: `make system-deps` installs them"
)


def text_then_scan() -> bytes:
    """Page 1 has a text layer; page 2 is a scanned image only."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in (make_pdf(["Welcome to Acme. This handbook explains how we work."]), make_scanned_pdf([HOLIDAY])):
        for page in PdfReader(io.BytesIO(data)).pages:
            writer.add_page(page)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@needs_ocr
def test_pages_without_a_text_layer_are_read_by_ocr_and_marked_so():
    pages = parse_file("handbook.pdf", text_then_scan(), 10 * MB, OcrSettings())
    assert [(p.number, p.ocr) for p in pages] == [(1, False), (2, True)]
    assert "Welcome to Acme" in pages[0].text
    assert "28 days of paid holiday" in pages[1].text and "expire in March" in pages[1].text


@needs_ocr
def test_a_scan_is_indexed_by_the_job_and_its_citation_says_ocr(data_dir, fresh_engine, local_embeddings, monkeypatch):
    monkeypatch.delenv("WORKBENCH_OCR", raising=False)
    services = Services(load_settings(), engine=fresh_engine, local_embeddings=local_embeddings)
    collection = get_collection(fresh_engine, "Scans", create=True)
    outcome = services.indexer.index_file(collection, "scan.pdf", text_then_scan())
    assert (outcome.status, outcome.pages) == ("indexed", 2), outcome.error
    [hit] = services.retriever.search("Scans", "paid holiday days per year", RetrievalSettings(k=1))
    assert "28 days of paid holiday" in hit.text
    assert hit.label() == "scan.pdf, p. 2 (OCR)"
    [intro] = services.retriever.search("Scans", "Welcome to Acme handbook", RetrievalSettings(k=1, mode="bm25"))
    assert intro.label() == "scan.pdf, p. 1"


def test_with_ocr_switched_off_a_scan_is_refused_with_the_advice_to_ocr_it(
    data_dir, fresh_engine, local_embeddings, monkeypatch
):
    monkeypatch.setenv("WORKBENCH_OCR", "0")
    services = Services(load_settings(), engine=fresh_engine, local_embeddings=local_embeddings)
    collection = get_collection(fresh_engine, "Scans", create=True)
    outcome = services.indexer.index_file(collection, "scan.pdf", make_scanned_pdf([HOLIDAY]))
    assert outcome.status == "failed" and "probably a scanned document. Run it through OCR first" in outcome.error


def test_without_tesseract_a_scan_is_refused_with_the_advice_to_ocr_it():
    missing = OcrSettings(tesseract="no-such-tesseract-on-path")
    with pytest.raises(ParseError, match=r"probably a scanned document\. Run it through OCR first"):
        parse_file("scan.pdf", make_scanned_pdf([HOLIDAY]), 10 * MB, missing)


@needs_ocr
def test_a_scan_with_more_pages_than_the_limit_is_refused_before_any_is_read():
    calls: list[int] = []
    with pytest.raises(ParseError, match="3 pages without a text layer; the workbench reads at most 2") as caught:
        parse_file(
            "big-scan.pdf",
            make_scanned_pdf(["one", "two", "three"]),
            10 * MB,
            OcrSettings(max_pages=2),
            lambda done, total: calls.append(done),
        )
    assert "WORKBENCH_OCR_MAX_PAGES" in str(caught.value) and calls == []


@needs_ocr
def test_ocr_that_runs_out_of_time_fails_the_file_and_names_where_it_stopped():
    with pytest.raises(ParseError, match=r"OCR stopped at page 1 .*\(0 of 2 scanned pages read\)") as caught:
        parse_file("slow-scan.pdf", make_scanned_pdf(["one", "two"]), 10 * MB, OcrSettings(timeout_s=1e-9))
    assert "WORKBENCH_OCR_TIMEOUT_S" in str(caught.value)


@needs_ocr
def test_ocr_reports_each_page_it_has_read():
    seen: list[tuple[int, int]] = []
    pages = parse_file(
        "scan.pdf",
        make_scanned_pdf(["Page one.", "Page two."]),
        10 * MB,
        OcrSettings(),
        lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 2), (2, 2)] and [p.text for p in pages] == ["Page one.", "Page two."]


def test_a_citation_of_an_ocr_page_says_so_and_old_stored_sources_still_load():
    ocr = Source(1, "d1-v1-c0", 1, "scan.pdf", 2, 0, "28 days", 0.9, ocr=True)
    assert ocr.label() == "scan.pdf, p. 2 (OCR)"
    stored_before_ocr = {k: v for k, v in ocr.to_dict().items() if k != "ocr"}
    assert Source(**stored_before_ocr).label() == "scan.pdf, p. 2"
