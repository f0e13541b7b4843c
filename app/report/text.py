"""Text in reports: HTML escaping, a tiny safe Markdown subset, string checks.

Every piece of user-supplied text in a report goes through :func:`escape`;
section text may use the Markdown subset of :func:`markdown_to_html`, in which
raw HTML is shown as text.
"""

from __future__ import annotations

import html
import re

from engine.errors import ParamError

__all__ = ["check_str", "escape", "markdown_to_html"]

_BULLET = re.compile(r"^\s*[-*]\s+(\S.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(\S.*)$")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])")


def escape(text: object) -> str:
    """``text`` as HTML text or attribute value (``&``, ``<``, ``>`` and quotes escaped)."""
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escape one line of text, then apply code, bold and italic."""
    parts = _CODE.split(text)  # odd positions are code spans
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{escape(part)}</code>")
        else:
            escaped = _BOLD.sub(r"<strong>\1</strong>", escape(part))
            out.append(_ITALIC.sub(r"<em>\1</em>", escaped))
    return "".join(out)


def check_str(value: object, name: str, *, nonempty: bool = False) -> None:
    """Raise :class:`ParamError` unless ``value`` is a string (non-blank with ``nonempty``)."""
    if not isinstance(value, str):
        raise ParamError(f"{name} must be a string (got {type(value).__name__}).")
    if nonempty and not value.strip():
        raise ParamError(f"{name} must not be empty (got {value!r}).")


def markdown_to_html(text: str) -> str:
    """Convert a tiny, safe subset of Markdown to HTML.

    Supported: paragraphs (separated by blank lines; single line breaks join),
    bullet lists (``- `` or ``* ``), numbered lists (``1. ``), indented
    continuation lines of a list item, ``**bold**``, ``*italic*`` and
    ```code```. Everything else, raw HTML included, is escaped and shown as text.

    Parameters
    ----------
    text : str
        The Markdown source.

    Returns
    -------
    str
        An HTML fragment (``<p>``, ``<ul>``/``<ol>`` elements); empty for blank text.

    Examples
    --------
    >>> markdown_to_html("**Note** <b>\\n\\n- one\\n- two")
    '<p><strong>Note</strong> &lt;b&gt;</p>\\n<ul><li>one</li><li>two</li></ul>'
    """
    check_str(text, "text")
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []
    kind = ""

    def flush_para() -> None:
        if para:
            blocks.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def flush_list() -> None:
        nonlocal kind
        if items:
            body = "".join(f"<li>{_inline(item)}</li>" for item in items)
            blocks.append(f"<{kind}>{body}</{kind}>")
            items.clear()
        kind = ""

    for line in text.splitlines():
        if not line.strip():
            flush_para()
            flush_list()
            continue
        item = _BULLET.match(line)
        new_kind = "ul"
        if item is None:
            item, new_kind = _NUMBERED.match(line), "ol"
        if item is not None:
            flush_para()
            if kind != new_kind:
                flush_list()
                kind = new_kind
            items.append(item.group(1).strip())
        elif items and line[:1].isspace():
            items[-1] += " " + line.strip()
        else:
            flush_list()
            para.append(line.strip())
    flush_para()
    flush_list()
    return "\n".join(blocks)
