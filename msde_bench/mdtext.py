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


def plain(markdown: str) -> str:
    """Markdown text of the leaderboard as plain text for the web page (which sets it as text): no
    code, bold or italic marks, the escapes of md_text undone."""
    text = markdown.replace("**", "").replace("`", "")
    text = " ".join(w[1:-1] if len(w) > 2 and w.startswith("_") and w.endswith("_") else w for w in text.split(" "))
    text = text.strip("_").replace(" _", " ").replace("_ ", " ")
    for escaped, raw in (("\\|", "|"), ("\\[", "["), ("\\]", "]"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(escaped, raw)
    return text
