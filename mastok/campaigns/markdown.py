"""Campaign texts (markdown) to safe HTML for participants.

Raw HTML in the markdown is escaped, the result is sanitised again with nh3, task-list items
(`- [ ]`) become checkboxes and `[accept]Label[/accept]` becomes the consent's accept button.
"""

from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from mdit_py_plugins.tasklists import tasklists_plugin

ACCEPT = re.compile(r"\[accept\](.+?)\[/accept\]", re.DOTALL)
TAGS = {
    *nh3.ALLOWED_TAGS,
    "input",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "hr",
    "pre",
}
ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "input": {"type", "class", "checked"},
    "li": {"class"},
    "ul": {"class"},
}

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).use(
    tasklists_plugin, enabled=True
)


def _only_checkboxes(tag: str, attribute: str, value: str) -> str | None:
    if tag == "input" and attribute == "type" and value != "checkbox":
        return None
    return value


@lru_cache(maxsize=256)
def render(text: str) -> str:
    """Markdown to sanitised HTML (links open safely; no script, style or raw HTML)."""
    html = _markdown.render(text)
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, attribute_filter=_only_checkboxes)


@lru_cache(maxsize=256)
def render_consent(text: str) -> str:
    """The consent: rendered markdown whose `[accept]…[/accept]` is the accept button."""
    return ACCEPT.sub(r'<button id="accept" type="button">\1</button>', render(text), count=1)
