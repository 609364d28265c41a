"""Stores: where experiments, trials and workers live. :func:`open_store` picks one by URL.

URLs:
    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (the default,
      ``sqlite:///./hyperdock.db``); a bare file path means the same.
    * ``postgresql://user:password@host:port/database``, or a libpq keyword/value
      string (``host=db.lab user=hd dbname=hd``)
    * ``mongodb://…`` and the original ``mongo://host:port/db/collection``
"""

from __future__ import annotations

import os
import re

from hyperdock.errors import ConfigError, StoreNotFound
from hyperdock.redact import redact_url
from hyperdock.storage.base import SCHEMA_VERSION, Store, resolve_experiment, resolve_trial

__all__ = [
    "DEFAULT_STORE_URL",
    "SCHEMA_VERSION",
    "Store",
    "open_store",
    "redact_url",
    "resolve_experiment",
    "resolve_trial",
]

DEFAULT_STORE_URL = "sqlite:///./hyperdock.db"

#: A libpq keyword/value connection string starts with one of libpq's keywords. (Taken
#: for an SQLite file name, it made a file named after it, password included.)
_LIBPQ_KEYWORDS = re.compile(
    r"\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode|"
    r"connect_timeout|application_name|options|target_session_attrs)\s*=",
    re.IGNORECASE,
)


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open (and create if needed) the store that ``url`` names.

    Args:
        url: A store URL (see the module docstring); ``None`` reads ``HYPERDOCK_STORE``,
            then falls back to :data:`DEFAULT_STORE_URL`.
        create: False for readers (``status``, ``trials``, …): an SQLite file that does
            not exist is an error instead of a new, empty store. Database servers
            (PostgreSQL, MongoDB) are always opened as they are.

    Raises:
        ConfigError: the URL is not one Hyperdock understands.
        StoreNotFound: ``create`` is False and the SQLite file does not exist.
        StoreConnectionError: the database cannot be reached or opened.
    """
    url = url or os.environ.get("HYPERDOCK_STORE") or DEFAULT_STORE_URL
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if not scheme and _LIBPQ_KEYWORDS.match(url):
        scheme = "postgresql"
    if scheme in ("", "sqlite", "file"):
        from hyperdock.storage.sqlite import SQLiteStore

        path = url.split("://", 1)[1] if "://" in url else url
        if scheme in ("sqlite", "file"):
            path = path[1:] if path.startswith("/") else path
        if not path:
            raise ConfigError(f"store URL {url!r} names no file; use sqlite:///./hyperdock.db")
        if not create and path != ":memory:" and not os.path.exists(os.path.expanduser(path)):
            # Checked before sqlite3.connect, which would create the file (and its folder).
            raise StoreNotFound(f"no store at {path} (run an experiment first, or give --store)")
        return SQLiteStore(path)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from hyperdock.storage.postgres import PostgresStore

        # libpq reads postgresql://, postgres:// and keyword strings; drop SQLAlchemy's
        # "+psycopg".
        return PostgresStore("postgresql:" + url.split(":", 1)[1] if "+" in scheme else url)
    if scheme in ("mongo", "mongodb", "mongodb+srv"):
        from hyperdock.storage.mongo import MongoStore

        return MongoStore(url)
    raise ConfigError(
        f"unknown store URL {redact_url(url)!r}: use sqlite:///path.db, "
        "postgresql://user@host/db or mongodb://host/db"
    )
