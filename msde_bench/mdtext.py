"""Values from result files as markdown text: escaped so that nothing from a contributed result
can open markup (the leaderboard, its notes, `results --format markdown`)."""

from __future__ import annotations


def md_text(value) -> str:
    """A value from a result file as markdown text: nothing in it can open a table column (`|`),
    an HTML tag or an entity, a code span, a link or an image (`[`, `]`), or a new line. Result
    files come from contributors."""
    text = " ".join(str(value).split())
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`"), ("[", "\\["),
                      ("]", "\\]")):
        text = text.replace(raw, safe)
    return text


def code(value) -> str:
    """A value from a result file as a markdown code span (no backticks or new lines inside)."""
    return "`" + " ".join(str(value).split()).replace("`", "'").replace("|", "\\|") + "`"
