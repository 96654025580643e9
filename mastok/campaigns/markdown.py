"""Campaign texts (markdown) to safe HTML for participants.

Raw HTML in the markdown is escaped and the result is sanitised again with nh3. Task-list items
(`- [ ]`) become checkboxes. Go Mastok's tags are recognised in the markdown's text (never in
code, link or image text, or attributes) by a markdown-it core rule that swaps them for tokens
whose HTML mastok builds:

- every text: `[new_link]https://…[end_link]` is a link reading "this link" that opens in a new
  tab (http and https URLs only);
- the consent only, the first of each: `[accept]Label[/accept]` is the accept button,
  `[technical_code]` a text field, `[alert]…[/alert]` and
  `[technical_code_alert]…[/technical_code_alert]` the alerts Go Mastok's page shows or hides.

A tag that is not closed, holds a tag of its own kind, or crosses a link, emphasis or paragraph
boundary stays text; so does a tag written with a backslash (`\\[accept]`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from mdit_py_plugins.tasklists import tasklists_plugin

TAGS = {
    *nh3.ALLOWED_TAGS,
    "button",
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
# Attribute values mastok's own markup uses; any other value is dropped by the sanitiser.
PINNED = {
    "a": {"target": {"_blank"}},
    "button": {"id": {"accept"}, "type": {"button"}},
    "div": {
        "id": {"alert-container", "technical-code-alert-container"},
        "class": {"alert alert-danger"},
        "role": {"alert"},
    },
    "input": {
        "type": {"checkbox", "text"},
        "class": {"task-list-item-checkbox"},
        "id": {"technical_code"},
        "name": {"technical_code"},
    },
}
ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {*nh3.ALLOWED_ATTRIBUTES["a"], "target"},
    "button": {"id", "type"},
    "div": {"id", "class", "role"},
    "input": {"type", "class", "checked", "id", "name"},
    "li": {"class"},
    "ul": {"class"},
}

ALERT = {"class": "alert alert-danger", "role": "alert"}
# Opening tag: (closing tag, the element's tag and attributes). `new_link` builds a link instead.
PAIRED = {
    "accept": ("/accept", "button", {"id": "accept", "type": "button"}),
    "alert": ("/alert", "div", {"id": "alert-container", **ALERT}),
    "technical_code_alert": (
        "/technical_code_alert",
        "div",
        {"id": "technical-code-alert-container", **ALERT},
    ),
    "new_link": ("end_link", "a", {}),
}
BLOCKS = {"alert", "/alert", "technical_code_alert", "/technical_code_alert"}
CONSENT_ONLY = {"accept", "alert", "technical_code_alert", "technical_code"}
TECHNICAL_CODE = {"type": "text", "id": "technical_code", "name": "technical_code"}
MARKER = re.compile(
    r"\[(/?accept|/?alert|/?technical_code_alert|technical_code|new_link|end_link)\]"
)


def _split_markers(children: Sequence[Token]) -> list[Token]:
    """Text tokens cut at each tag; a tag is a `mastok_tag` token (its name in `info`)."""
    out: list[Token] = []
    for token in children:
        if token.type != "text" or "[" not in token.content:
            out.append(token)
            continue
        start = 0
        for match in MARKER.finditer(token.content):
            if match.start() > start:
                out.append(Token("text", "", 0, content=token.content[start : match.start()]))
            out.append(Token("mastok_tag", "", 0, content=match.group(), info=match.group(1)))
            start = match.end()
        if start < len(token.content):
            out.append(Token("text", "", 0, content=token.content[start:]))
    return out


def _link_href(content: Sequence[Token], md: MarkdownIt) -> str | None:
    """The URL of `[new_link]URL[end_link]`: one piece of text, an absolute http(s) URL."""
    if len(content) != 1 or content[0].type != "text":
        return None
    url = content[0].content.strip()
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    href = md.normalizeLink(url)
    return href if md.validateLink(href) else None


def _blank(token: Token) -> bool:
    return token.type in {"softbreak", "hardbreak"} or (
        token.type == "text" and not token.content.strip()
    )


def _trim(tokens: list[Token]) -> list[Token]:
    """Line breaks and spaces at both ends of a piece of a paragraph dropped."""
    while tokens and _blank(tokens[0]):
        tokens = tokens[1:]
    while tokens and _blank(tokens[-1]):
        tokens = tokens[:-1]
    if tokens and tokens[0].type == "text":
        tokens[0] = Token("text", "", 0, content=tokens[0].content.lstrip())
    if tokens and tokens[-1].type == "text":
        tokens[-1] = Token("text", "", 0, content=tokens[-1].content.rstrip())
    return tokens


class _Tags:
    """Pairs the tags of one inline token's children and builds their tokens.

    Tags pair at the same level (not across emphasis) and never inside a link. Alerts split
    the paragraph they are in, so they are taken only at its top level, and hold no alert.
    """

    def __init__(self, children: list[Token], used: set[str], state: StateCore):
        self.children = children
        self.used = used  # tags with an id, taken once in a text
        self.md = state.md
        self.consent = bool(state.env.get("mastok_consent"))
        self.depths: list[int] = []
        self.in_link: list[bool] = []
        depth = links = 0
        for token in children:
            if token.nesting < 0:
                depth -= 1
            if token.type == "link_close":
                links -= 1
            self.depths.append(depth)
            self.in_link.append(links > 0)
            if token.type == "link_open":
                links += 1
            if token.nesting > 0:
                depth += 1
        self.replace: dict[int, list[Token]] = {}
        self.blocks: set[int] = set()  # indices of alert tags taken, where paragraphs split
        # Closing tag -> (index, level): none at that level from the last search up to the index.
        self.unclosed: dict[str, tuple[int, int]] = {}

    def tag(self, index: int) -> str | None:
        token = self.children[index]
        if token.type != "mastok_tag" or self.in_link[index]:
            return None
        return token.info

    def allowed(self, name: str) -> bool:
        return name not in self.used and (self.consent or name not in CONSENT_ONLY)

    def scan(self, low: int, high: int, block: bool, alert: bool = False) -> None:
        """Takes the tags from `low` to `high`: alerts only if `block`, in an alert only links."""
        i = low
        while i < high:
            name = self.tag(i)
            if name is None or not self.allowed(name) or (alert and name != "new_link"):
                i += 1
                continue
            if name == "technical_code":
                self.used.add(name)
                field = Token("mastok_technical_code", "input", 0)
                for key, value in TECHNICAL_CODE.items():
                    field.attrSet(key, value)
                self.replace[i] = [field]
                i += 1
                continue
            if name not in PAIRED:  # a closing tag without its opening one
                i += 1
                continue
            closing, element, attrs = PAIRED[name]
            end = self.closing(i, high, closing)
            if end is None:
                i += 1
                continue
            inner = {self.tag(k) for k in range(i + 1, end)} - {None}
            content = self.children[i + 1 : end]
            if name in inner or closing in inner or all(_blank(t) for t in content):
                pass  # nested, or empty: the pair and all it holds stay text
            elif name == "new_link":
                self.link(i, end, content)
            elif name in BLOCKS:
                if block and self.depths[i] == 0 and not BLOCKS & inner:
                    self.element(i, end, name, element, attrs)
                    self.blocks.update((i, end))
                    self.scan(i + 1, end, block=False, alert=True)
            elif not inner:  # the accept button holds no tag
                self.element(i, end, name, element, attrs)
            i = end + 1

    def element(self, i: int, end: int, name: str, element: str, attrs: dict[str, str]) -> None:
        self.used.add(name)
        opening = Token(f"mastok_{name}_open", element, 1, block=element == "div")
        closing = Token(f"mastok_{name}_close", element, -1, block=element == "div")
        for key, value in attrs.items():
            opening.attrSet(key, value)
        self.replace[i] = [opening]
        self.replace[end] = [closing]

    def closing(self, start: int, high: int, closing: str) -> int | None:
        """The first closing tag after `start` at its level, if no element closes first."""
        depth = self.depths[start]
        if (failed := self.unclosed.get(closing)) and start < failed[0] and depth == failed[1]:
            return None  # an earlier search from this level already found none up to there
        stop = high
        for k in range(start + 1, high):
            if self.depths[k] < depth:
                stop = k
                break
            if self.depths[k] == depth and self.tag(k) == closing:
                return k
        self.unclosed[closing] = (stop, depth)
        return None

    def link(self, i: int, end: int, content: list[Token]) -> None:
        href = _link_href(content, self.md)
        if href is None:
            return
        opening = Token("link_open", "a", 1)
        opening.attrSet("href", href)
        opening.attrSet("target", "_blank")
        self.replace[i] = [opening, Token("text", "", 0, content="this link")]
        for k in range(i + 1, end):
            self.replace[k] = []
        self.replace[end] = [Token("link_close", "a", -1)]

    def tokens(self, low: int = 0, high: int | None = None) -> list[Token]:
        """The children from `low` to `high`, tags taken replaced, other tags as text."""
        out: list[Token] = []
        for k in range(low, len(self.children) if high is None else high):
            token = self.children[k]
            if k in self.replace:
                out.extend(self.replace[k])
            elif token.type == "mastok_tag":
                out.append(Token("text", "", 0, content=token.content))
            else:
                out.append(token)
        return out


def _inline(source: Token, children: list[Token]) -> Token:
    token = Token("inline", "", 0, children=children, level=source.level, map=source.map)
    token.content = "".join(child.content for child in children)
    return token


def _paragraph(tags: _Tags, tokens: list[Token], i: int) -> list[Token]:
    """A paragraph holding alerts, cut into paragraphs and alert `div`s."""
    opening, inline, closing = tokens[i - 1], tokens[i], tokens[i + 1]
    out: list[Token] = []
    cuts = sorted(tags.blocks)
    bounds = [-1, *cuts, len(tags.children)]
    for n, (low, high) in enumerate(pairwise(bounds)):
        inside = n % 2 == 1  # between an alert's opening and closing tags
        if inside:
            out.extend(tags.replace[low])
        piece = _trim(tags.tokens(low + 1, high))
        if piece:
            if inside:
                out.append(_inline(inline, piece))
            else:
                out += [opening, _inline(inline, piece), closing]
        if inside:
            out.extend(tags.replace[high])
    return out


def _tags_rule(state: StateCore) -> None:
    used: set[str] = set()
    tokens = state.tokens
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type != "inline" or not token.children:
            out.append(token)
            i += 1
            continue
        in_paragraph = (
            0 < i < len(tokens) - 1
            and tokens[i - 1].type == "paragraph_open"
            and tokens[i + 1].type == "paragraph_close"
        )
        tags = _Tags(_split_markers(token.children), used, state)
        tags.scan(0, len(tags.children), block=in_paragraph)
        if tags.blocks:
            out.pop()  # the paragraph's opening, which `_paragraph` places again
            out += _paragraph(tags, tokens, i)
            i += 2
            continue
        token.children = tags.tokens()
        out.append(token)
        i += 1
    state.tokens = out


def _tags_plugin(md: MarkdownIt) -> None:
    # Before text_join: backslash escapes are still tokens of their own, so `\[accept]` stays text.
    md.core.ruler.before("text_join", "mastok_tags", _tags_rule)


_markdown = (
    MarkdownIt("commonmark", {"html": False, "linkify": False})
    .use(tasklists_plugin, enabled=True)
    .use(_tags_plugin)
)


def _pinned_values(tag: str, attribute: str, value: str) -> str | None:
    allowed = PINNED.get(tag, {}).get(attribute)
    return value if allowed is None or value in allowed else None


def sanitise(html: str) -> str:
    """Only the tags and attributes markdown and mastok's tags make, with mastok's values."""
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, attribute_filter=_pinned_values)


def _html(text: str, consent: bool) -> str:
    return sanitise(_markdown.render(text, {"mastok_consent": consent}))


@lru_cache(maxsize=256)
def render(text: str) -> str:
    """Markdown to sanitised HTML (links open safely; no script, style or raw HTML)."""
    return _html(text, consent=False)


@lru_cache(maxsize=256)
def consent_hash(text: str) -> str:
    """A consent's version, as visits record it: the hash of its markdown."""
    return hashlib.sha256(text.encode()).hexdigest()


def render_consent(text: str) -> str:
    """The consent: rendered markdown with the accept button, technical code and alerts."""
    return _html(text, consent=True)
