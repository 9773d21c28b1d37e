"""What a person reads in an element that went through lib.ui.untrusted: markdown escapes and joiners removed."""

import re

_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def shown(markdown: str) -> str:
    """The text as displayed: `support\\.reply` reads `support.reply`; invisible word joiners dropped."""
    return _ESCAPED.sub(r"\1", markdown).replace("\u2060", "")
