"""The dashboard's HTML: one small shell per page. ``app.js`` fetches the JSON API and
renders everything with DOM APIs (``textContent``), so no user data is ever in this HTML
except attribute values escaped with :func:`html.escape`."""

from __future__ import annotations

import html
from collections.abc import Mapping

_TITLES = {
    "experiments": "Experiments",
    "experiment": "Experiment",
    "trial": "Trial",
    "workers": "Workers",
}


def render(page: str, urls: Mapping[str, str] | None = None, **data: str) -> str:
    """The HTML shell of ``page`` (``experiments``, ``experiment``, ``trial``,
    ``workers``); ``urls`` maps static file names to their (versioned) URLs; ``data``
    become ``data-*`` attributes of ``<body>`` for ``app.js``.

    ``app.js`` comes first and plotly.js after it, both deferred: the page starts its
    API request while plotly.js is still being compiled, and draws once both are in."""
    urls = urls or {}

    def url(name: str) -> str:
        return html.escape(urls.get(name, f"/static/{name}"), quote=True)

    attrs = "".join(
        f' data-{html.escape(key, quote=True)}="{html.escape(value, quote=True)}"'
        for key, value in sorted(data.items())
    )
    title = _TITLES.get(page, "Hyperdock")
    plotly = (
        f'<script id="plotly-js" src="{url("plotly.min.js")}" defer></script>\n'
        if page in ("experiment", "trial")
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hyperdock · {html.escape(title)}</title>
<link rel="stylesheet" href="{url("style.css")}">
<script src="{url("app.js")}" defer></script>
{plotly}
</head>
<body data-page="{html.escape(page, quote=True)}"{attrs}>
<header>
<a class="brand" href="/">Hyperdock</a>
<nav><a href="/">Experiments</a> <a href="/workers">Workers</a></nav>
<span id="status" class="status"></span>
</header>
<div id="error" class="error" role="alert" hidden></div>
<div id="notice" class="notice" role="status" hidden></div>
<main id="main"><p class="muted">Loading…</p></main>
</body>
</html>
"""


def not_found(message: str) -> str:
    """A plain 404 page."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Not found</title>'
        '<link rel="stylesheet" href="/static/style.css"></head><body><main>'
        f'<h1>Not found</h1><p>{html.escape(message)}</p><p><a href="/">Experiments</a></p>'
        "</main></body></html>"
    )
