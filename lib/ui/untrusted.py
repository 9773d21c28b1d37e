"""Showing text from users, documents and models: markdown that can format but never reach another host.

Streamlit renders markdown with micromark (CommonMark) plus GFM, directives and math: an image `![x](https://…)`
makes every viewer's browser call out, links and autolinks (`<https://…>`, bare `https://…`, `www.…`, e-mail
addresses) become anchors, and `:red[…]`, `:material/…:` or `:streamlit:` restyle the page. Raw HTML is shown as
text when `unsafe_allow_html` is off, but is escaped here all the same.

`untrusted_markdown` escapes, outside code, every character that starts such a construct (`\\ [ ] < ` : @ $ &`,
the dot of `www.`) and keeps lists, emphasis, headings, quotes, tables, code blocks and inline code. Code is left
as written only where a CommonMark parser (markdown-it, as micromark follows the same spec) proves it is code,
never where a GFM table could split it; the result is parsed again, and if anything in it is a link, an image,
HTML or code that was not meant to be, every character is escaped instead. `untrusted_label` is the one-line form
for names (file, template, test set and user names) in labels, captions and buttons.
"""

from __future__ import annotations

import re
import textwrap
import time
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable
from functools import cache
from string import punctuation

import streamlit as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

_PUNCT = frozenset(punctuation)  # what CommonMark lets a backslash escape
_ESCAPE = frozenset("[]<`:@$&")  # links, images, HTML, autolinks, code, directives, e-mail, math, entities
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # overrides, embeddings, isolates
_JOINER = "\u2060"  # invisible; placed inside what would otherwise read as a URL, an e-mail address or an icon
# Streamlit finds these in the text after parsing (remark-gfm's autolinks, its own `:material_x:`, `:streamlit:`),
# whatever escapes they were written with; the joiner goes where the match ends.
_READS_AS_LINK = re.compile(r":(?=//|material|streamlit)|www(?=\.)|@", re.IGNORECASE)
_FORBIDDEN = frozenset({"image", "link_open", "html_inline", "html_block"})
_RUN = re.compile("`+")
_DEEPEST = 12  # block nesting markdown-it still parses fully (it stops at 20)
_PARSED_CHARS = 200_000  # longer text is escaped throughout: parsing it twice would take seconds


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def untrusted_markdown(text: str) -> str:
    """Markdown for `st.markdown` that shows `text` formatted, with no image, link, HTML or directive left live."""
    lines = _clean(text).split("\n")  # as Streamlit will: it dedents and strips every markdown body
    if len(text) <= _PARSED_CHARS:
        tokens = _parser().parse("\n".join(lines))
        if max((t.level for t in tokens), default=0) <= _DEEPEST:
            shown, code = _render(lines, _code_blocks(tokens, lines), spans=True)
            if _is_inert(shown, code):
                return shown
    return _render(lines, {}, spans=False)[0]  # escaped through and through: code shows its backslashes


def untrusted_label(text: str, max_chars: int = 300) -> str:
    """One line for a markdown label, caption or button: control characters gone, every punctuation mark escaped."""
    name = clean_name(text)
    if len(name) > max_chars:
        name = name[: max_chars - 1].rstrip() + "…"
    shown = ["\\" + ch if ch in _PUNCT else ch for ch in name]
    for at in reversed(_joins(name)):
        shown.insert(at, _JOINER)
    return "".join(shown)


def clean_name(text: str) -> str:
    """A name as plain text on one line: no control or format characters (bidi overrides, zero-width), spaces
    collapsed. For widgets that do not render markdown (select boxes, text inputs, tables of data)."""
    kept = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    return " ".join(kept.split())  # splits at every kind of whitespace, line and paragraph separators included


def show_untrusted(text: str) -> None:
    """Show untrusted markdown in the current container."""
    st.markdown(untrusted_markdown(text))


def stream_untrusted(pieces: Iterable[str], every_s: float = 0.1, clock: Callable[[], float] = time.monotonic) -> str:
    """Show a streamed answer as it grows, made safe as a whole on each redraw; returns the full text.

    Replaces `st.write_stream`, which renders the raw pieces. Redraws come at most every `every_s` seconds, and
    never more often than twice the time the last one took, so a long answer does not spend its time redrawing.
    """
    box = st.empty()
    text, drawn, next_draw = "", "", float("-inf")
    for piece in pieces:
        text += piece
        if text and clock() >= next_draw:
            started = clock()
            box.markdown(untrusted_markdown(text))
            drawn, ended = text, clock()
            next_draw = ended + max(every_s, 2 * (ended - started))
    if text != drawn:
        box.markdown(untrusted_markdown(text))
    return text


def _clean(text: str) -> str:
    """The text as Streamlit parses it (dedented, stripped), line endings as `\\n`, NUL as U+FFFD (as CommonMark
    does), no other control characters or bidi overrides. Escaping it changes neither its indent nor its ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    text = "".join(ch for ch in text if ch in "\t\n" or (ch not in _BIDI and not (ch < " " or "\x7f" <= ch <= "\x9f")))
    return textwrap.dedent(text).strip()


def _code_blocks(tokens: list[Token], lines: list[str]) -> dict[int, tuple[int, str, str | None]]:
    """Code blocks to keep as written: first line -> (end line, content, first line to write instead or None).

    A block is kept only where no GFM table can be open at its first line: no `|` since the last blank line.
    """
    risky = _table_risk(lines)
    blocks: dict[int, tuple[int, str, str | None]] = {}
    for t in tokens:
        if t.type not in ("fence", "code_block") or t.map is None or risky[t.map[0]]:
            continue
        start, end = t.map
        opener = None
        if t.type == "fence" and "mermaid" in t.info.lower():  # a diagram renders with its own engine: show code
            line = lines[start]
            opener = line[: line.index(t.markup) + len(t.markup)] + "text"
        blocks[start] = (end, t.content, opener)
    return blocks


def _table_risk(lines: list[str]) -> list[bool]:
    """Per line: could it be part of a GFM table (a `|` since the last blank line)? Tables split code at `|`."""
    risky, flags = False, []
    for line in lines:
        risky = False if not line.strip() else risky or "|" in line
        flags.append(risky)
    return flags


def _render(
    lines: list[str], blocks: dict[int, tuple[int, str, str | None]], spans: bool
) -> tuple[str, list[tuple[str, str]]]:
    """The escaped document and the code it keeps as written, in order: ("block" | "inline", content)."""
    out: list[str] = []
    code: list[tuple[str, str]] = []
    risky = _table_risk(lines)
    i = 0
    while i < len(lines):
        if i in blocks:
            end, content, opener = blocks[i]
            out.append(lines[i] if opener is None else opener)
            out.extend(lines[i + 1 : end])
            code.append(("block", content))
            i = end
            continue
        escaped, inline = _escape_line(lines[i], spans and not risky[i])
        out.append(escaped)
        code.extend(("inline", c) for c in inline)
        i += 1
    return "\n".join(out), code


def _escape_line(line: str, spans: bool) -> tuple[str, list[str]]:
    """One line with every construct-starting character escaped; code spans closed on the line kept if `spans`.

    Escapes are not enough for what Streamlit finds in the text after parsing (URLs, e-mail addresses, icons):
    those get an invisible joiner, placed by the text as it will read.
    """
    runs = _backtick_runs(line) if spans and "`" in line else {}
    shown: list[str] = []  # per character of the text as it reads: how it is written
    reads: list[str] = []  # the text as it reads (a code span counts as one NUL)
    kept: list[str] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            pair = i + 1 < n and line[i + 1] in _PUNCT  # an escape already: the character stays literal
            reads.append(line[i + 1] if pair else ch)
            shown.append(line[i : i + 2] if pair else "\\\\")
            i += 2 if pair else 1
            continue
        if ch == "`":
            run_end = i
            while run_end < n and line[run_end] == "`":
                run_end += 1
            length = run_end - i
            starts = runs.get(length, [])
            at = bisect_left(starts, run_end)
            if at < len(starts):  # the next run of the same length closes the span (backslashes do not escape in code)
                closer = starts[at]
                reads.append("\x00")
                shown.append(line[i : closer + length])
                kept.append(_span_content(line[run_end:closer]))
                i = closer + length
            else:
                reads.extend("`" * length)
                shown.extend(["\\`"] * length)
                i = run_end
            continue
        reads.append(ch)
        shown.append("\\" + ch if ch in _ESCAPE else ch)
        i += 1
    for at in reversed(_joins("".join(reads))):
        shown.insert(at, _JOINER)
    return "".join(shown), kept


def _joins(text: str) -> list[int]:
    """Where an invisible joiner keeps text from reading as a URL, an e-mail address or an icon."""
    return [m.end() for m in _READS_AS_LINK.finditer(text)]


def _backtick_runs(line: str) -> dict[int, list[int]]:
    """Where each run of backticks starts on the line, by its length (a run is never next to another backtick)."""
    runs: dict[int, list[int]] = {}
    for m in _RUN.finditer(line):
        runs.setdefault(len(m.group()), []).append(m.start())
    return runs


def _span_content(raw: str) -> str:
    """A code span's content as CommonMark reads it: one space off each end when both ends have one."""
    if len(raw) >= 2 and raw[0] == " " and raw[-1] == " " and raw.strip(" "):
        return raw[1:-1]
    return raw


def _is_inert(shown: str, code: list[tuple[str, str]]) -> bool:
    """Parsed again: no link, image or HTML, and code exactly where it was kept as written."""
    found: list[tuple[str, str]] = []
    stack = list(reversed(_parser().parse(shown)))
    while stack:
        t = stack.pop()
        if t.type in _FORBIDDEN:
            return False
        if t.type in ("fence", "code_block"):
            found.append(("block", t.content))
        elif t.type == "code_inline":
            found.append(("inline", t.content))
        stack.extend(reversed(t.children or []))
    return found == code
