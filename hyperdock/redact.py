"""Credentials out of store URLs, before anything is printed, logged or served.

Store URLs carry secrets in several forms that libpq and the MongoDB drivers accept:
the password of the userinfo (``user:pw@host``, also with characters the user forgot to
percent-encode: ``@``, ``/``, ``?``, ``#``), query parameters (``?password=…``,
``sslpassword``, ``tlsCertificateKeyFilePassword``, ``authMechanismProperties`` with an
AWS session token …) and libpq's ``key=value`` connection strings. Redaction errs on
the side of hiding too much: a URL it cannot parse loses everything after ``://`` but
the host it can still find.
"""

from __future__ import annotations

import re
import urllib.parse

#: Shown instead of a secret.
MASK = "***"

#: Query parameters whose value is a secret (lower case; a key that contains
#: "password", "secret" or "token" is one too).
_SECRET_KEYS = frozenset({"authmechanismproperties", "sslkey_password", "pass"})
_SECRET_WORDS = ("password", "secret", "token", "passwd", "pwd")

#: ``password=value`` in a libpq keyword/value string (value bare or single-quoted).
_KEYWORD_SECRET = re.compile(r"\b((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _is_secret_key(key: str) -> bool:
    key = key.lower()
    return key in _SECRET_KEYS or any(word in key for word in _SECRET_WORDS)


def _split_userinfo(rest: str) -> tuple[str, str] | None:
    """``(userinfo, remainder)`` of the part of a URL after ``://``, or None when it has
    no userinfo. The userinfo ends at the last ``@`` before the query (an unencoded
    ``@``, ``/`` or ``?`` in a password must not end it early)."""
    head = rest.split("?", 1)[0] if "@" in rest.split("?", 1)[0] else rest
    if "@" not in head:
        return None
    userinfo, _, _ = head.rpartition("@")
    return userinfo, rest[len(userinfo) + 1 :]


def _query_items(query: str) -> list[str]:
    """``key=value`` items of a query, with their separators (MongoDB takes ``;`` as
    well as ``&``) as items of their own."""
    return re.split(r"([&;])", query)


def _redact_query(query: str) -> str:
    parts = []
    for item in _query_items(query):
        key, sep, _ = item.partition("=")
        parts.append(f"{key}={MASK}" if sep and _is_secret_key(urllib.parse.unquote(key)) else item)
    return "".join(parts)


def redact_url(url: str) -> str:
    """``url`` with every credential replaced by ``***``, for messages and logs.

    Args:
        url: A store URL (``postgresql://``, ``mongodb://``, ``mongo://``, ``sqlite://``)
            or a libpq ``key=value`` connection string.

    Returns:
        The same text with the userinfo password, secret query parameters and
        ``password=`` keywords masked. The user name and hosts are kept.
    """
    if "://" not in url:
        return _KEYWORD_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", url)
    scheme, _, rest = url.partition("://")
    split = _split_userinfo(rest)
    if split is not None:
        userinfo, rest = split
        user, sep, _ = userinfo.partition(":")
        prefix = f"{user}:{MASK}@" if sep else f"{user}@"
    else:
        prefix = ""
    if "?" in rest:
        before, _, query = rest.partition("?")
        fragment = ""
        if "#" in query:
            query, _, fragment = query.partition("#")
            fragment = "#" + fragment
        rest = f"{before}?{_redact_query(query)}{fragment}"
    return f"{scheme}://{prefix}{rest}"


def url_secrets(url: str) -> list[str]:
    """The secrets in ``url`` in every form a driver may echo them (as written, and
    percent-decoded), longest first; short ones (under 4 characters) are left out, as
    replacing them would mangle messages, and so would a password that equals the user
    name)."""
    found: set[str] = set()
    user = ""
    if "://" in url:
        split = _split_userinfo(url.partition("://")[2])
        if split is not None:
            user, sep, password = split[0].partition(":")
            if sep:
                found.add(password)
        query = url.partition("?")[2].partition("#")[0]
        for item in _query_items(query):
            key, sep, value = item.partition("=")
            if sep and _is_secret_key(urllib.parse.unquote(key)):
                found.add(value)
    for match in _KEYWORD_SECRET.finditer(url if "://" not in url else ""):
        found.add(match.group(2).strip("'"))
    forms = found | {urllib.parse.unquote(s) for s in found}
    # A driver may split an unencoded password elsewhere (libpq ends the userinfo at
    # the first "@"), and then quote its pieces as a host or a path.
    forms |= {piece for s in set(forms) for piece in re.split(r"[@/?#:]", s)}
    # A password equal to the user name would mask the name everywhere it is mentioned.
    keep = {user, urllib.parse.unquote(user)}
    return sorted((s for s in forms if len(s) >= 4 and s not in keep), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message) without any secret of ``url`` in it."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text
