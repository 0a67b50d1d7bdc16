"""Small tables as plain HTML: every cell shows its value rounded and keeps it exactly, as JSON, in
data-value, every row and cell says its column (data-column), so what the page shows can be read
back and compared with the client's numbers. For tables of up to a few hundred rows; larger ones
belong in st.dataframe."""
import html
import json
import math
from numbers import Integral, Real

import pandas as pd
import streamlit as st


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_shown(v) for v in value)
    return str(value).replace("\n", "\\n")


def _exact(value) -> str:
    """The value as JSON (strings quoted: the page's sanitizer trims attribute values)."""
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)):
        return json.dumps(None if math.isnan(value) else float(value))
    if isinstance(value, Integral) and not isinstance(value, bool):
        return json.dumps(int(value))
    if isinstance(value, (list, tuple)):
        return json.dumps([_plain(v) for v in value])
    return json.dumps(_plain(value))


def _plain(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def to_html(frame: pd.DataFrame, name: str, max_rows: int = 500) -> str:
    """The first `max_rows` rows of `frame` as an HTML table with class lensd-table and
    data-table=`name`."""
    head = "".join(f'<th data-column="{html.escape(str(c), quote=True)}" '
                   f'style="text-align:left;padding:2px 8px;border-bottom:1px solid #ccc">'
                   f"{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.head(max_rows).iterrows():
        cells = "".join(
            f'<td data-column="{html.escape(str(c), quote=True)}" '
            f'data-value="{html.escape(_exact(row[c]), quote=True)}" '
            f'style="padding:2px 8px;white-space:pre">{html.escape(_shown(row[c]))}</td>'
            for c in frame.columns)
        rows.append(f'<tr class="lensd-row">{cells}</tr>')
    more = (f'<div style="font-size:12px">{len(frame) - max_rows} more rows not shown</div>'
            if len(frame) > max_rows else "")
    return (f'<div style="overflow-x:auto"><table class="lensd-table" '
            f'data-table="{html.escape(name, quote=True)}" '
            f'style="border-collapse:collapse;font-size:13px"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{more}</div>')


def show(frame: pd.DataFrame, name: str, max_rows: int = 500) -> None:
    st.html(to_html(frame, name, max_rows))
