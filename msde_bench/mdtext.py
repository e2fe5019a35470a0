"""Values from result files as markdown text: escaped so that nothing from a contributed result
can open markup (the leaderboard, its notes, `results --format markdown`)."""

from __future__ import annotations

import re

#: characters markdown (GitHub's included) gives a meaning inline, each shown as itself with a backslash
_ACTIVE = "\\`*_~[]|"
#: a word joiner after `@`: GitHub links `name@host.org` as an e-mail whatever is escaped, not across it
_JOINER = "\u2060"


def md_text(value) -> str:
    """A value from a result file as markdown text: nothing in it can open a table column (`|`),
    an HTML tag or an entity, a code span, a link or an image (`[`, `]`), emphasis or strikethrough
    (`*`, `_`, `~`), or a new line, and nothing autolinks (`://`, `www.`, an e-mail address), so it
    renders as the characters it holds. Result files come from contributors."""
    text = " ".join(str(value).split())
    text = "".join("\\" + c if c in _ACTIVE else c for c in text)
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("://", "\\://"), ("@", "@" + _JOINER)):
        text = text.replace(raw, safe)
    return _WWW.sub(lambda m: m.group(0)[:-1] + "\\.", text)


_WWW = re.compile(r"www\.", re.IGNORECASE)


def code(value) -> str:
    """A value from a result file as a markdown code span (no backticks or new lines inside)."""
    return "`" + " ".join(str(value).split()).replace("`", "'").replace("|", "\\|") + "`"


def plain(markdown: str) -> str:
    """Markdown text of the leaderboard as plain text for the web page (which sets it as text): no
    code, bold or italic marks, the escapes of md_text undone."""
    text = re.sub(r"(?<!\\)`", "", markdown.replace("**", ""))
    text = " ".join(w[1:-1] if len(w) > 2 and w.startswith("_") and w.endswith("_") else w for w in text.split(" "))
    text = re.sub(r"(^|(?<=[ (]))_(?=\S)|(?<=\S)(?<!\\)_(?=$|[ ).,;:])", "", text)
    text = text.replace("@" + _JOINER, "@")
    for escaped, raw in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(escaped, raw)
    return re.sub(r"\\([\\`*_~\[\]|:.])", r"\1", text)
