"""Operators' Markdown, rendered safely for a public page: CommonMark through markdown-it-py with
raw HTML off (any ``<tag>`` is shown as text), images off (a page loads nothing from elsewhere),
and markdown-it's link check, which refuses ``javascript:``, ``vbscript:``, ``file:`` and
``data:`` targets (such a link stays as plain text)."""

from __future__ import annotations

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": False}).disable("image")


def render(text: str) -> str:
    """``text`` (Markdown) as an HTML fragment, every character of it escaped but the markup."""
    return _MD.render(text)
