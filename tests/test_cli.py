"""The command line: ingest files and folders, search with JSON output, clear errors and exit codes."""

import json
import subprocess
import sys
from pathlib import Path

from files import make_pdf

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lib.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ingest_a_folder_then_search_it_as_json(tmp_path, any_chroma):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.pdf").write_bytes(make_pdf(["Intro page.", "The VPN password rotates every 90 days."]))
    (docs / "sub" / "faq.md").write_text("# FAQ\n\nPrinters are on floor two.\n")
    (docs / "sub" / "ignored.png").write_bytes(b"\x89PNG")
    first = cli("ingest", str(docs), "--collection", "IT", "--quiet")
    assert first.returncode == 0, first.stderr
    assert "[1/2] guide.pdf: indexed" in first.stdout and "[2/2] faq.md: indexed" in first.stdout
    again = cli("ingest", str(docs), "--collection", "IT", "--quiet")
    assert again.stdout.count(": unchanged") == 2
    found = cli("search", "How often does the VPN password change?", "--collection", "IT", "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and set(hits[0]) == {"document", "page", "chunk", "score", "text"}
    assert (hits[0]["document"], hits[0]["page"]) == ("guide.pdf", 2) and "90 days" in hits[0]["text"]


def test_a_bad_file_fails_that_file_and_the_exit_code_says_so(tmp_path):
    (tmp_path / "ok.txt").write_text("Lunch is at noon.")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    result = cli("ingest", str(tmp_path / "ok.txt"), str(tmp_path / "bad.pdf"), "--collection", "C", "--quiet")
    assert result.returncode == 1
    assert "ok.txt: indexed" in result.stdout and "bad.pdf: failed (bad.pdf is not a readable PDF" in result.stdout


def test_missing_paths_and_unknown_collections_are_clear_errors(tmp_path):
    missing = cli("ingest", str(tmp_path / "nope"), "--collection", "C")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    unknown = cli("search", "x", "--collection", "Nowhere", "--json")
    assert unknown.returncode == 2 and "no collection called 'Nowhere'" in unknown.stderr
