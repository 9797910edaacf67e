"""The Prompts page's side-by-side diff: two halves that fit the column, long lines wrapped between words."""

from __future__ import annotations

import difflib
import html
import re

import streamlit as st

# Scoped to the diff's table: st.html puts this style in the page itself. Fixed layout with set widths for
# the link and line-number columns makes the two text columns share what is left of the page's column;
# pre-wrap keeps indentation and breaks lines at spaces (a word longer than a whole half is cut as a last
# resort rather than overflowing).
STYLE = """<style>
table.diff{width:100%;table-layout:fixed;font-family:monospace;font-size:12px;border-collapse:collapse}
table.diff td,table.diff th{padding:0 4px;vertical-align:top}
table.diff td{white-space:pre-wrap;overflow-wrap:break-word;word-break:normal}
table.diff td.diff_header,table.diff td.diff_next{white-space:nowrap;text-align:right;color:#888}
table.diff th{text-align:left;font-weight:600}
table.diff .diff_add{background:#d7f5dd}table.diff .diff_chg{background:#fff3b0}
table.diff .diff_sub{background:#fbd4d4}
</style>"""
# Link column, line numbers, text; once per side.
COLUMNS = '<col style="width:1.5em"><col style="width:3.5em"><col>' * 2
_COLGROUPS = re.compile(r"(?:<colgroup></colgroup>\s*){6}")


def side_by_side_html(old_text: str, new_text: str, old_label: str, new_label: str) -> str:
    """The HTML table of the changed lines (three lines of context) of two texts, old on the left."""
    table = difflib.HtmlDiff().make_table(
        old_text.splitlines(), new_text.splitlines(), html.escape(old_label), html.escape(new_label),
        context=True, numlines=3,
    )
    # difflib writes every space as a non-breaking one and marks cells nowrap, so a long line could only
    # overflow the column (or, with its wrapcolumn, be cut mid-word onto a row of its own). Plain spaces
    # let the browser wrap between words; a literal "&nbsp;" in the text was escaped as "&amp;nbsp;".
    table = table.replace("&nbsp;", " ").replace(' nowrap="nowrap"', "")
    return STYLE + _COLGROUPS.sub(COLUMNS, table, count=1)


def render_side_by_side(old_text: str, new_text: str, old_label: str, new_label: str) -> None:
    st.html(side_by_side_html(old_text, new_text, old_label, new_label))
