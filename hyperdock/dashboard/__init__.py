"""The web dashboard: a WSGI app over the store contract, served by the standard library.

``create_app(store, token)`` returns a WSGI callable with a JSON API (``/api/...``) and
HTML pages rendered in the browser by ``static/app.js``; :func:`serve` runs it on a
threading ``wsgiref`` server. Actions (POST) are CSRF-safe: they need the header
``X-Hyperdock-Token`` equal to the token when one is set, else the custom header
``X-Requested-With: hyperdock`` (which browsers send cross-site only with a CORS grant,
never given here) and a local ``Host``. With a token, reading the API needs it too.

Every request must name an allowed ``Host`` (the bound address, a loopback name, or one
given with ``allow_hosts``): a web page the user visits could otherwise point a DNS name
of its own at 127.0.0.1 ("DNS rebinding") and read the dashboard as same-origin.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hyperdock import trialfs
from hyperdock.dashboard import api, detail, pages
from hyperdock.dashboard.artifacts import ArtifactFile
from hyperdock.dashboard.importances import ImportanceService
from hyperdock.dashboard.sampling import PlotCache
from hyperdock.errors import ConfigError, StoreError
from hyperdock.storage.base import Store

__all__ = ["LOCAL_HOSTS", "check_bind", "check_token", "create_app", "new_token", "serve"]

log = logging.getLogger("hyperdock.dashboard")

#: Hosts the dashboard may bind without a token.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Shortest token accepted: a short one could be guessed by any local account.
MIN_TOKEN_LENGTH = 16
#: Seconds a connection may stay idle (a slow or silent client must not hold a thread).
IDLE_TIMEOUT = 30.0
#: Addresses that mean "every interface": the Host check cannot know this machine's
#: names then, so it is left to the token (which binding them requires).
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
#: Largest JSON body an action accepts.
MAX_BODY = 1024 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
#: Static files are served with a version in their URL (``?v=``) and cached for a year
#: under it; the browser then also keeps plotly.js compiled (V8's code cache), which
#: saves seconds on every later page load.
_IMMUTABLE = "public, max-age=31536000, immutable"
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token.

    Raises:
        ConfigError: ``host`` is not a loopback name and no token is set.
    """
    if host not in LOCAL_HOSTS and not token:
        raise ConfigError(
            f"refusing to bind the dashboard to {host} without a token: "
            "give --token (or HYPERDOCK_TOKEN), or use --host 127.0.0.1"
        )


def check_token(token: str | None) -> None:
    """Refuse a token too short to be secret.

    Raises:
        ConfigError: ``token`` is shorter than :data:`MIN_TOKEN_LENGTH` characters, or
            holds white space or control characters (a token of 16 spaces is no secret,
            and such a token cannot travel in a URL as printed).
    """
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"the dashboard token must be at least {MIN_TOKEN_LENGTH} characters long "
            f"(got {len(token)}); leave --token out to get a random one"
        )
    if token is not None and any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(
            "the dashboard token may not hold spaces or control characters; "
            "leave --token out to get a random one"
        )


def new_token() -> str:
    """A random token for a dashboard started without one (printed in its URL)."""
    return secrets.token_urlsafe(24)


def _hostname(host_header: str) -> str:
    """The name in a ``Host`` header, lower case, without port or IPv6 brackets."""
    return (urllib.parse.urlsplit(f"//{host_header}").hostname or "").lower()


_REFUSED_HOST_PAGE = """<!doctype html><meta charset="utf-8"><title>Host refused</title>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>This dashboard refused the host name {host}</h1>
<p>Hyperdock's dashboard answers only to the address it listens on and to
<code>localhost</code>, so that a web page cannot read it through a DNS name of its
own pointed at this machine (DNS rebinding).</p>
<p>If you opened it through this name on purpose, start it with
<code>hyperdock dashboard --allow-host {host}</code>.</p>
"""


@cache
def plotly_js() -> bytes:
    """plotly.js from the installed ``plotly`` package (never a CDN).

    Raises:
        ConfigError: plotly is not installed.
    """
    try:
        import plotly
    except ImportError:
        raise ConfigError(
            "the dashboard needs plotly: pip install 'hyperdock[dashboard]'"
        ) from None
    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if path.is_file():
        return path.read_bytes()
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs()).encode("utf-8")


class _Asset:
    """A static file: its bytes, their gzip and a version (a hash of the bytes)."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        self.version = hashlib.sha1(body, usedforsecurity=False).hexdigest()[:12]
        self.content_type = content_type


@cache
def static_asset(name: str) -> _Asset | None:
    """The static file ``name`` (``plotly.min.js``, ``app.js`` or ``style.css``), read
    once; None for any other name."""
    if name == "plotly.min.js":
        return _Asset(plotly_js(), _STATIC_TYPES[".js"])
    if name not in ("app.js", "style.css"):
        return None
    path = STATIC_DIR / name
    return _Asset(path.read_bytes(), _STATIC_TYPES[path.suffix])


def asset_url(name: str) -> str:
    """The versioned URL of the static file ``name``."""
    asset = static_asset(name)
    return f"/static/{name}" + (f"?v={asset.version}" if asset is not None else "")


class _Response:
    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]],
        stream: api.TrialFile | ArtifactFile | None = None,
    ) -> None:
        self.status, self.body, self.content_type, self.headers = (
            status,
            body,
            content_type,
            headers,
        )
        self.stream = stream  # sent instead of body (a file, read in chunks)


_REASONS = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _json(status: int, data: Any) -> _Response:
    body = json.dumps(data, allow_nan=False, default=str).encode("utf-8")
    return _Response(status, body, "application/json; charset=utf-8", [])


def _error(status: int, message: str) -> _Response:
    return _json(status, {"error": message})


def _sanitize(data: Any) -> Any:
    """JSON cannot hold NaN/inf: send them as null."""
    if isinstance(data, float) and (data != data or data in (float("inf"), float("-inf"))):
        return None
    if isinstance(data, dict):
        return {str(k): _sanitize(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_sanitize(v) for v in data]
    return data


def _dumps(data: Any) -> str:
    """Compact JSON; NaN and infinities (rare) sent as null."""
    try:
        return json.dumps(data, allow_nan=False, default=str, separators=(",", ":"))
    except ValueError:
        return json.dumps(_sanitize(data), allow_nan=False, default=str, separators=(",", ":"))


#: Bodies smaller than this are sent uncompressed.
GZIP_MIN_BYTES = 1024
#: Seconds a cached experiment detail is trusted while trials are queued or running,
#: even when its fingerprint did not change (catches a retry between two polls).
DETAIL_TTL = 15.0


class _Encoded:
    """One encoded reply: its JSON bytes, their gzip, and a version (the ETag)."""

    def __init__(self, body: bytes, version: str) -> None:
        self.body = body
        self.version = version
        self.gzipped = gzip.compress(body, compresslevel=5) if len(body) >= GZIP_MIN_BYTES else None
        self.made_at = time.monotonic()


class _DetailCache:
    """Encoded ``GET /api/experiments/<name>`` replies, one per experiment, rebuilt only
    when :func:`detail.detail_fingerprint` changes (finished sampled trials are kept in
    ``plots``; importances come from ``importances``)."""

    def __init__(self) -> None:
        self.plots = PlotCache()
        self.importances = ImportanceService()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[Any, ...], _Encoded]] = {}

    def get(self, store: Store, name: str) -> _Encoded:
        snap = detail.snapshot(store, name)
        key = detail.detail_fingerprint(store, name, self.importances, snap)
        hit = self._lookup(name, key)
        if hit is not None:
            return hit
        with self._build_lock:  # one rebuild at a time; others wait and reuse it
            hit = self._lookup(name, key)  # built meanwhile by another request
            if hit is not None:
                return hit
            built = detail.experiment_detail(
                store, name, plots=self.plots, importance_service=self.importances, snap=snap
            )
            body = _dumps(built)
            raw = body.encode("utf-8")
            version = hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]
            # the version goes first, so the page can tell a repeated reply cheaply
            raw = b'{"version":"' + version.encode() + b'",' + raw[1:]
            entry = _Encoded(raw, version)
            with self._lock:
                self._entries[name] = (key, entry)
            return entry

    def _lookup(self, name: str, key: tuple[Any, ...]) -> _Encoded | None:
        with self._lock:
            hit = self._entries.get(name)
        if hit is None or hit[0] != key:
            return None
        counts = dict(key[7])
        active = counts.get("queued", 0) or counts.get("running", 0)
        if active and time.monotonic() - hit[1].made_at > DETAIL_TTL:
            return None
        return hit[1]


class DashboardApp:
    """The WSGI application. Build it with :func:`create_app`."""

    def __init__(
        self,
        store: Store,
        token: str | None = None,
        *,
        bound_host: str | None = None,
        allow_hosts: Iterable[str] = (),
        limits: trialfs.Limits = trialfs.DEFAULT_LIMITS,
    ) -> None:
        """Serve ``store``; ``token`` (when set) is required by every API request.
        ``bound_host`` and ``allow_hosts`` are the ``Host`` names accepted besides the
        loopback ones (all, when bound to every interface with a token and no
        ``allow_hosts``); ``limits`` bound what is read of trial folders."""
        self.store = store
        self.token = token or None
        self.limits = limits
        self._details = _DetailCache()
        names = {name.lower().strip("[]") for name in allow_hosts}
        self._any_host = bound_host in _WILDCARD_HOSTS and not names and bool(self.token)
        if bound_host and bound_host not in _WILDCARD_HOSTS:
            names.add(bound_host.lower().strip("[]"))
        self.allowed_hosts = frozenset(names | set(LOCAL_HOSTS))
        #: The worker HTTP-asked trials are leased to (see api.ask_trial).
        self._http_worker = api.http_worker_id()

    # -- WSGI -----------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request."""
        try:
            response = self._dispatch(environ)
        except api.ApiError as exc:
            response = _error(exc.status, exc.message)
        except StoreError as exc:
            log.warning("dashboard: store error: %s", exc)
            response = _error(503, f"store error: {exc}")
        except Exception:
            log.exception("dashboard: unexpected error")
            response = _error(500, "internal error (see the dashboard's log)")
        length = len(response.body) if response.stream is None else response.stream.size
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(length)),
            *_SECURITY_HEADERS,
            ("Content-Security-Policy", _CSP),
            *response.headers,
        ]
        if not any(key == "Cache-Control" for key, _ in response.headers):
            headers.append(("Cache-Control", "no-store"))
        reason = _REASONS.get(response.status, "Error")
        start_response(f"{response.status} {reason}", headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            if response.stream is not None:
                response.stream.close()
            return [b""]
        if response.stream is not None:
            return response.stream
        return [response.body]

    def _dispatch(self, environ: dict[str, Any]) -> _Response:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/")) or "/"
        refused = self._refused_host(environ)
        if refused is not None:
            log.warning("dashboard: refused a request for host %r", refused)
            if path.startswith("/api/"):
                raise api.ApiError(
                    403,
                    f"refused: host {refused!r} is not this dashboard's; start it with "
                    f"--allow-host {refused} if you meant it",
                )
            page = _REFUSED_HOST_PAGE.format(host=html.escape(refused))
            return _Response(403, page.encode("utf-8"), "text/html; charset=utf-8", [])
        if path.startswith("/api/"):
            if method in ("GET", "HEAD"):
                self._authorise_read(environ)
                if m := re.fullmatch(r"/api/experiments/([^/]+)", path):
                    return self._detail(environ, urllib.parse.unquote(m.group(1)))
                if m := re.fullmatch(r"/api/trials/(\d+)/(files|artifacts)/(.+)", path):
                    trial_id, relative = int(m.group(1)), urllib.parse.unquote(m.group(3))
                    if m.group(2) == "artifacts":
                        return self._download(
                            api.open_trial_artifact(self.store, trial_id, relative)
                        )
                    return self._file(trial_id, relative)
                query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
                return _json(200, _sanitize(self._api_get(path, query)))
            if method == "POST":
                self._authorise(environ)
                body = self._body(environ)
                return _json(200, _sanitize(self._api_post(path, body)))
            raise api.ApiError(405, f"{method} is not allowed here")
        if method not in ("GET", "HEAD"):
            raise api.ApiError(405, f"{method} is not allowed here")
        if path.startswith("/static/"):
            return self._static(environ, path[len("/static/") :])
        return self._page(path)

    def _detail(self, environ: dict[str, Any], name: str) -> _Response:
        """The cached experiment detail: 304 when the client has this version, gzip
        when the client takes it."""
        entry = self._details.get(self.store, name)
        etag = f'"{entry.version}"'
        headers = [("ETag", etag)]
        json_type = "application/json; charset=utf-8"
        if etag in str(environ.get("HTTP_IF_NONE_MATCH", "")):
            return _Response(304, b"", json_type, headers)
        accept = str(environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers.append(("Vary", "Accept-Encoding"))
        if entry.gzipped is not None and "gzip" in accept.lower():
            headers.append(("Content-Encoding", "gzip"))
            return _Response(200, entry.gzipped, json_type, headers)
        return _Response(200, entry.body, json_type, headers)

    def _file(self, trial_id: int, relative: str) -> _Response:
        """A file of the trial's ``out/`` folder, as a download."""
        return self._download(api.open_trial_file(self.store, trial_id, relative))

    @staticmethod
    def _download(found: api.TrialFile | ArtifactFile) -> _Response:
        """``found`` streamed as an attachment."""
        quoted = urllib.parse.quote(found.name, safe="")
        disposition = f"attachment; filename*=UTF-8''{quoted}"
        headers = [("Content-Disposition", disposition)]
        return _Response(200, b"", "application/octet-stream", headers, stream=found)

    # -- security -------------------------------------------------------------------
    def _refused_host(self, environ: dict[str, Any]) -> str | None:
        """The request's ``Host`` name when it is not one this dashboard answers to,
        else None. A request without one (not a browser's) is let through."""
        header = str(environ.get("HTTP_HOST") or "")
        if not header or self._any_host:
            return None
        name = _hostname(header)
        return None if name in self.allowed_hosts else (name or header)

    def _authorise_read(self, environ: dict[str, Any]) -> None:
        """With a token, the API's data (parameters, results, logs) is for its holders
        only: GETs need the token as well. The pages and static files hold no data.
        Raises ApiError(401) otherwise."""
        if self.token is None:
            return
        given = str(environ.get("HTTP_X_HYPERDOCK_TOKEN", ""))
        if not given:
            raise api.ApiError(401, "this dashboard needs its token: open the page with ?token=…")
        if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
            raise api.ApiError(401, "wrong dashboard token: open the page with ?token=…")

    def _authorise(self, environ: dict[str, Any]) -> None:
        """Let an action through only with the token, or (no token) the custom header
        from a local origin. Raises ApiError(403) otherwise."""
        if self.token is not None:
            given = str(environ.get("HTTP_X_HYPERDOCK_TOKEN", ""))
            if not given:
                raise api.ApiError(
                    403, "this action needs the dashboard token: open the page with ?token=…"
                )
            if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
                raise api.ApiError(403, "wrong dashboard token")
            return
        if environ.get("HTTP_X_REQUESTED_WITH", "") != "hyperdock":
            raise api.ApiError(403, "refused: actions need the header X-Requested-With: hyperdock")
        host = str(environ.get("HTTP_HOST") or "")
        hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
        if hostname not in LOCAL_HOSTS:
            # Without a token only a local page may act (defeats DNS rebinding).
            raise api.ApiError(403, f"refused: actions from host {host!r} need a token")
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin != "null":
            origin_host = urllib.parse.urlsplit(str(origin)).netloc
            if origin_host != host:
                raise api.ApiError(403, "refused: cross-origin request")

    @staticmethod
    def _body(environ: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            raise api.ApiError(413, "request body too large")
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise api.ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise api.ApiError(400, "the body must be a JSON object")
        return data

    # -- routes ---------------------------------------------------------------------
    def _api_get(self, path: str, query: dict[str, list[str]]) -> Any:
        if path == "/api/experiments":
            return api.list_experiments(self.store)
        if path == "/api/workers":
            return api.list_workers(self.store)
        if m := re.fullmatch(r"/api/trials/(\d+)", path):
            return api.trial_detail(self.store, int(m.group(1)), self.limits)
        if m := re.fullmatch(r"/api/experiments/([^/]+)/trials", path):
            return detail.trial_page(self.store, urllib.parse.unquote(m.group(1)), query)
        if m := re.fullmatch(r"/api/experiments/([^/]+)/importances", path):
            name = urllib.parse.unquote(m.group(1))
            return detail.get_importances(
                self.store, name, self._details.importances, self._details.plots
            )
        raise api.ApiError(404, f"no such endpoint: {path}")

    def _api_post(self, path: str, body: dict[str, Any]) -> Any:
        if path == "/api/experiments":
            return api.create_experiment(self.store, body)
        if m := re.fullmatch(r"/api/trials/(\d+)/cancel", path):
            return api.cancel_trial(self.store, int(m.group(1)))
        if m := re.fullmatch(r"/api/trials/(\d+)/(tell|report)", path):
            call = api.tell_trial if m.group(2) == "tell" else api.report_trial
            return call(self.store, int(m.group(1)), body)
        if m := re.fullmatch(r"/api/experiments/([^/]+)/importances", path):
            name = urllib.parse.unquote(m.group(1))
            return detail.request_importances(
                self.store, name, self._details.importances, self._details.plots
            )
        if m := re.fullmatch(r"/api/experiments/([^/]+)/ask", path):
            name = urllib.parse.unquote(m.group(1))
            return api.ask_trial(self.store, name, self._http_worker)
        if m := re.fullmatch(r"/api/experiments/([^/]+)/(cancel|delete|clone)", path):
            name, action = urllib.parse.unquote(m.group(1)), m.group(2)
            if action == "cancel":
                return api.cancel_experiment(self.store, name)
            if action == "delete":
                return api.delete_experiment(self.store, name, body)
            return api.clone_experiment(self.store, name, body)
        raise api.ApiError(404, f"no such endpoint: POST {path}")

    @staticmethod
    def _static(environ: dict[str, Any], name: str) -> _Response:
        """A static file: cached for a year when asked for by its current version
        (``?v=``), else revalidated by ETag; gzip when the client takes it."""
        asset = static_asset(name)
        if asset is None:
            return _Response(404, b"not found", "text/plain; charset=utf-8", [])
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
        etag = f'"{asset.version}"'
        versioned = query.get("v") == [asset.version]
        headers = [("ETag", etag), ("Cache-Control", _IMMUTABLE if versioned else "no-cache")]
        if etag in str(environ.get("HTTP_IF_NONE_MATCH", "")):
            return _Response(304, b"", asset.content_type, headers)
        headers.append(("Vary", "Accept-Encoding"))
        if "gzip" in str(environ.get("HTTP_ACCEPT_ENCODING", "")).lower():
            headers.append(("Content-Encoding", "gzip"))
            return _Response(200, asset.gzipped, asset.content_type, headers)
        return _Response(200, asset.body, asset.content_type, headers)

    @staticmethod
    def _page(path: str) -> _Response:
        html_type = "text/html; charset=utf-8"
        urls = {name: asset_url(name) for name in ("app.js", "style.css", "plotly.min.js")}
        if path in ("/", "/experiments"):
            text = pages.render("experiments", urls)
        elif path == "/workers":
            text = pages.render("workers", urls)
        elif m := re.fullmatch(r"/experiments/([^/]+)", path):
            text = pages.render("experiment", urls, name=urllib.parse.unquote(m.group(1)))
        elif m := re.fullmatch(r"/trials/(\d+)", path):
            text = pages.render("trial", urls, id=m.group(1))
        else:
            return _Response(404, pages.not_found(f"no page {path}").encode(), html_type, [])
        return _Response(200, text.encode("utf-8"), html_type, [])


def create_app(
    store: Store,
    token: str | None = None,
    *,
    bound_host: str | None = None,
    allow_hosts: Iterable[str] = (),
    limits: trialfs.Limits = trialfs.DEFAULT_LIMITS,
) -> DashboardApp:
    """The dashboard as a WSGI callable over ``store``.

    Args:
        store: Any store; only the store contract is used.
        token: When set, every API request (reads and actions) needs header
            ``X-Hyperdock-Token`` equal to it; pages get it from ``?token=`` (kept in
            the tab's sessionStorage). Pages and static files hold no data and are
            served to anyone.
        bound_host: The address the server listens on: accepted as ``Host``.
        allow_hosts: More ``Host`` names to accept (a reverse proxy's, this
            machine's DNS name); requests for any other name get 403.
        limits: Largest files read from trial folders (``graphs.json``).
    """
    return DashboardApp(store, token, bound_host=bound_host, allow_hosts=allow_hosts, limits=limits)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6Server(_ThreadingServer):
    import socket as _socket

    address_family = _socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    #: Idle connections are closed (socket timeout on every read).
    timeout = IDLE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def make_dashboard_server(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    *,
    allow_hosts: Iterable[str] = (),
    limits: trialfs.Limits = trialfs.DEFAULT_LIMITS,
) -> WSGIServer:
    """A threading server (not yet serving) for the dashboard; ``port`` 0 picks one.

    Raises:
        ConfigError: binding beyond this machine without a token, or a short token.
    """
    check_token(token)
    check_bind(host, token)
    server_class = _IPv6Server if ":" in host else _ThreadingServer
    return make_server(
        host,
        port,
        create_app(store, token, bound_host=host, allow_hosts=allow_hosts, limits=limits),
        server_class=server_class,
        handler_class=_QuietHandler,
    )


def serve(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    *,
    ready: Callable[[str], None] | None = None,
    allow_hosts: Iterable[str] = (),
    limits: trialfs.Limits = trialfs.DEFAULT_LIMITS,
) -> None:
    """Serve the dashboard until interrupted.

    Args:
        ready: Called with the dashboard's URL once it listens.
        allow_hosts: More ``Host`` names to answer to (see :func:`create_app`).
        limits: Largest files read from trial folders (see :func:`create_app`).

    Raises:
        ConfigError: binding beyond this machine without a token, a short token, or
            the port is taken.
    """
    try:
        server = make_dashboard_server(
            store, host, port, token, allow_hosts=allow_hosts, limits=limits
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_port}/"
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
