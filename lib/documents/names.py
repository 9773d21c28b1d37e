"""An uploaded file's name as the workbench keeps and shows it: one line of visible characters, no path."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

MAX_NAME_CHARS = 120  # shown in lists, labels and citations; the extension is always kept


class FileNameError(ValueError):
    """A file name with nothing left to show once control characters and path parts are removed."""


def safe_file_name(name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """`name` without folders, control or format characters (bidi overrides, zero-width), with single spaces,
    at most `max_chars` long with its extension kept; FileNameError if nothing is left."""
    name = unicodedata.normalize("NFC", name)  # one spelling for names that look the same
    visible = "".join(ch for ch in name if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    base = visible.replace("\\", "/").rsplit("/", 1)[-1]  # a browser may send C:\Users\…\x.pdf or ../../x.pdf
    base = " ".join(base.split()).strip(" .")  # no hidden dot-files, no "." or ".."
    if not base:
        raise FileNameError(
            "The file's name has no visible characters once folders are removed; rename it and upload it."
        )
    if len(base) <= max_chars:
        return base
    suffix = PurePosixPath(base).suffix
    if len(suffix) > max_chars // 4:  # not an extension, just a long name with a dot in it
        suffix = ""
    return base[: max_chars - len(suffix) - 1].rstrip(" .") + "…" + suffix
