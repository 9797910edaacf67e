"""Markdown (CommonMark, with YAML front matter) and HTML into titled sections.

Markdown is parsed by markdown-it-py, so a `# comment` inside a fenced or indented code
block, a quote or a list is text, not a heading; only top-level headings (ATX or setext)
start sections, and a section keeps its blocks' source lines. HTML is parsed by
BeautifulSoup; every visible piece of text is kept once, laid out line by line. Text a reader
never sees (comments, hidden elements, comment-style link definitions) is never indexed: an
instruction hidden there must not reach a search or a prompt.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import PurePosixPath

import yaml

from common.errors import IngestError
from knowledge.types import Document, Section

# Navigation lists of other articles' titles match many queries and answer none.
_NAVIGATION = re.compile(r"^(related( articles| topics)?|see also|more help)$", re.I)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)+")


def title_from_name(name: str) -> str:
    return PurePosixPath(name).stem.replace("-", " ").replace("_", " ").strip().capitalize()


class _Sections:
    """Sections under a heading path: the first level-1 heading is the title, deeper ones nest."""

    def __init__(self, title: str = ""):
        self.title = title
        self.path: list[str] = []
        self.sections: list[Section] = []

    def add(self, text: str) -> None:
        # Blank lines around go; the first line's indentation (code) stays.
        text = _LEADING_BLANK_LINES.sub("", text).rstrip()
        if text and not (self.path and _NAVIGATION.match(self.path[-1])):
            self.sections.append(Section(heading=" > ".join(self.path), text=text))

    def heading(self, level: int, words: str) -> None:
        if level == 1 and not self.title:
            self.title, self.path = words, []
            return
        if words == self.title:  # the title again (an HTML page's <h1> repeating its <title>)
            self.path = []
            return
        depth = max(0, level - 2)
        self.path = self.path[:depth] + [words]


# -- Markdown ----------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _markdown(front_matter: bool):
    from markdown_it import MarkdownIt
    from mdit_py_plugins.front_matter import front_matter_plugin

    parser = MarkdownIt("commonmark")
    return parser.use(front_matter_plugin) if front_matter else parser


def _plain(inline) -> str:
    """The words of an inline token, without markup (image descriptions kept, raw HTML left out)."""
    words = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline", "image"):
            words.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            words.append(" ")
    return " ".join("".join(words).split())


def _front_matter(name: str, content: str, first_line: int) -> dict | None:
    """The YAML mapping of a front matter block; None when the block is not a mapping."""
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {first_line + 1 + mark.line}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise IngestError(name, f"front matter is not valid YAML ({where}{problem})") from exc
    return data if isinstance(data, dict) else None


def _has_html(tokens) -> bool:
    """Whether the Markdown holds raw HTML anywhere (a block, or inline in a paragraph or heading)."""
    return any(t.type == "html_block" or any(c.type == "html_inline" for c in t.children or []) for t in tokens)


def _shown_lines(text: str, tokens, start: int) -> list[str]:
    """The source lines, with those no block covers left blank: link reference definitions,
    including the `[//]: # (...)` idiom for comments, which no reader of the article sees."""
    lines = text.split("\n")
    shown = [""] * len(lines)
    for token in tokens:
        if token.level == 0 and token.map and token.type != "front_matter":
            first, end = token.map
            shown[first:end] = lines[first:end]
    shown[:start] = lines[:start]
    return shown


def load_markdown(name: str, text: str) -> Document:
    """`text` has "\\n" line endings only (markdown-it counts lines the same way).

    Only what a reader sees is kept: a Markdown file holding raw HTML is read as the HTML it
    renders to (so HTML comments and hidden elements go, as in an HTML file), and link reference
    definitions (`[//]: # (a comment)`) are left out.
    """
    tokens = _markdown(True).parse(text)
    meta: dict = {}
    start = 0
    front_matter = True
    if tokens and tokens[0].type == "front_matter":
        # Line 1 is the opening fence; the YAML starts on line 2.
        found = _front_matter(name, tokens[0].content, 1)
        if found is None:  # "---", text, "---" that is not metadata: a rule and a setext heading
            tokens, front_matter = _markdown(False).parse(text), False
        else:
            meta, start = found, tokens[0].map[1]
    meta_title = meta.get("title")
    if _has_html(tokens):
        doc = _html_sections(_markdown(front_matter).renderer.render(tokens, _markdown(front_matter).options, {}))
    else:
        doc = _Sections()
        lines = _shown_lines(text, tokens, start)
        for i, token in enumerate(tokens):
            if token.type != "heading_open" or token.level != 0:
                continue
            doc.add("\n".join(lines[start:token.map[0]]))
            start = token.map[1]
            doc.heading(int(token.tag[1]), _plain(tokens[i + 1]))
        doc.add("\n".join(lines[start:]))
    category = meta.get("category")
    return Document(
        source=name,
        title=doc.title or (str(meta_title).strip() if isinstance(meta_title, (str, int, float)) else "")
        or title_from_name(name),
        sections=doc.sections,
        category=str(category).strip() if isinstance(category, (str, int, float)) else "",
    )


# -- HTML --------------------------------------------------------------------------------

# Not shown by a browser (or, for nav, links to other pages rather than this page's text).
_SKIP = {"head", "title", "script", "style", "noscript", "template", "nav", "svg", "iframe", "object", "select"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Elements a browser lays out as blocks: the text before and after them is on other lines.
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "dir",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html",
    "legend", "li", "main", "menu", "ol", "p", "section", "summary", "table", "tbody", "tfoot", "thead", "tr",
    "ul", "output",
}
# Styles that keep an element's text off the screen: not displayed, invisible, transparent or of no size.
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*(hidden|collapse)|opacity\s*:\s*(0+(\.0*)?|\.0+)\s*(;|!|$)"
    r"|font-size\s*:\s*(0+(\.0*)?|\.0+)(px|em|rem|pt|%)?\s*(;|!|$)", re.I)


def _hidden(tag) -> bool:
    """Whether a browser (or a screen reader, for aria-hidden) leaves the element's text out."""
    if tag.has_attr("hidden") or str(tag.get("aria-hidden") or "").strip().lower() == "true":
        return True
    return bool(_HIDDEN_STYLE.search(str(tag.get("style") or "")))


class _Layout:
    """Lines of visible text, with list items marked and table cells separated."""

    def __init__(self):
        self.lines: list[str] = []
        self.pieces: list[str] = []
        self.prefix = ""
        self.lists: list[list] = []  # [ordered, next number] of each open list
        self.cells = 0
        self.in_cell = 0  # a cell's paragraphs stay on its row's line

    def flush(self) -> None:
        words = " ".join("".join(self.pieces).split())
        self.pieces = []
        if words:
            self.lines.append(self.prefix + words)
            self.prefix = ""

    def take(self) -> str:
        self.flush()
        text, self.lines = "\n".join(self.lines), []
        return text

    def open(self, tag) -> None:
        name = tag.name
        if name in ("ul", "ol", "menu", "dir"):
            start = str(tag.get("start") or "1")
            self.lists.append([name == "ol", int(start) if start.lstrip("-").isdigit() else 1])
        if name in _BLOCKS:
            self.pieces.append(" ") if self.in_cell and name != "tr" else self.flush()
        if name == "li":
            ordered, number = self.lists[-1] if self.lists else (False, 1)
            indent = "  " * max(0, len(self.lists) - 1)
            self.prefix = f"{indent}{number}. " if ordered else f"{indent}- "
            if self.lists:
                self.lists[-1][1] += 1
        elif name == "tr":
            self.cells = 0
        elif name in ("td", "th"):
            if self.cells:
                self.pieces.append(" | ")
            self.cells += 1
            self.in_cell += 1

    def close(self, tag) -> None:
        if tag.name in ("td", "th"):
            self.in_cell = max(0, self.in_cell - 1)
        elif tag.name in _BLOCKS:
            self.pieces.append(" ") if self.in_cell and tag.name != "tr" else self.flush()
        if tag.name in ("ul", "ol", "menu", "dir") and self.lists:
            self.lists.pop()

    def preformatted(self, text: str) -> None:
        self.flush()
        self.lines.extend(line.rstrip() for line in text.strip("\n").split("\n"))


def load_html(name: str, text: str) -> Document:
    doc = _html_sections(text)
    return Document(source=name, title=doc.title or title_from_name(name), sections=doc.sections)


def _html_sections(text: str) -> _Sections:
    """The visible text of an HTML page, in sections under its headings; the title is the page's
    <title>, else its first <h1>."""
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, PreformattedString, RubyParenthesisString, Tag

    soup = BeautifulSoup(text, "html.parser")
    title_tag = soup.find("title") or soup.find("h1")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    doc, layout = _Sections(title), _Layout()
    # An explicit stack, not recursion: a page may nest elements thousands deep.
    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            layout.close(node)
        elif isinstance(node, NavigableString):
            # Comments, CDATA, doctypes and <rp> fallbacks are not shown.
            if not isinstance(node, (PreformattedString, RubyParenthesisString)):
                layout.pieces.append(str(node))
        elif isinstance(node, Tag) and node.name not in _SKIP and not _hidden(node):
            if node.name in _HEADINGS:
                doc.add(layout.take())
                words = " ".join(node.get_text(" ").split())
                if words:
                    doc.heading(int(node.name[1]), words)
            elif node.name == "pre":
                layout.preformatted(node.get_text())
            elif node.name == "br":
                layout.pieces.append(" ") if layout.in_cell else layout.flush()
            else:
                layout.open(node)
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.contents))
    doc.add(layout.take())
    return doc
