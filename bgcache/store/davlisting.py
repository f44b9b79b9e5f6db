"""WebDAV answers as bgcache reads them: a ``PROPFIND``'s multistatus, parsed as it arrives,
with every ``href`` resolved; and the names, paths and pages those answers hold.

The layer under :mod:`bgcache.store.davclient`, which sends the requests and hands this
module an answer's body a piece at a time. A listing is parsed by expat within these
limits (a server's answer is untrusted input): no DTD, so no entity can be declared, let
alone expanded; at most :data:`~bgcache.store.remote_limits.MAX_LISTING_BYTES` bytes and
:data:`~bgcache.store.remote_limits.MAX_LISTING_ENTRIES` entries; elements
:data:`MAX_XML_DEPTH` deep; a text or an unfinished tag or comment of at most
:data:`MAX_XML_TOKEN` bytes. Every ``href`` is resolved (percent-decoding, ``.``, ``..``,
``/`` inside a name, an absolute URL) and must name the listed directory itself or an entry
directly inside it, on the server asked or the one that answered; any other refuses the
whole listing, so no name from it can lead a request out of the pool's path.
"""

from __future__ import annotations

import email.utils
import functools
import urllib.parse
from collections.abc import Callable
from typing import Any
from xml.parsers import expat

from bgcache.errors import StorageServerError
from bgcache.store.remote import Entry
from bgcache.store.remote_limits import (
    MAX_LISTING_BYTES,
    MAX_LISTING_ENTRIES,
    too_many_entries,
    where,
)

#: Elements a listing may nest (a multistatus is 6 deep).
MAX_XML_DEPTH = 32
#: Bytes of one text, tag or other token of a listing (an href of a 4 KiB path, encoded).
MAX_XML_TOKEN = 1 << 16
_DAV = "DAV: "
#: What a PROPFIND asks for: the three properties a pool's listing needs.
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"
)


def origin(url: Any) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``httpx.URL``, the port filled in."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host.lower(), port


def segments(raw_path: str) -> list[str] | None:
    """The decoded segments of a percent-encoded path, or None if one of them is ``.``,
    ``..``, or decodes to something holding ``/``, a backslash or a NUL (never a pool's).

    Example:
        >>> segments("/pool/a%20b/"), segments("/pool/%2e%2e%2f"), segments("/pool/../x")
        (['pool', 'a b'], None, None)
    """
    out = []
    for part in raw_path.split("/"):
        if not part:
            continue  # "//" and the trailing "/" of a collection
        try:
            name = urllib.parse.unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if name in (".", "..") or any(c in name for c in "/\\\0"):
            return None
        out.append(name)
    return out


def is_html(response: Any, start: bytes = b"") -> bool:
    """Whether an answer is an HTML page: by its ``Content-Type``, or its first bytes
    ``start`` (a page sent as something else)."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    head = start[:64].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return kind in ("text/html", "application/xhtml+xml") or head.startswith(
        (b"<!doctype html", b"<html")
    )


def shown(text: str) -> str:
    """``text`` as an error line may show it: quoted, one line, at most 120 characters."""
    return repr(text if len(text) <= 120 else text[:117] + "...")


_MULTISTATUS, _RESPONSE, _HREF, _STATUS = (
    _DAV + n for n in ("multistatus", "response", "href", "status")
)
_PROPSTAT, _PROP, _RESOURCETYPE, _COLLECTION = (
    _DAV + n for n in ("propstat", "prop", "resourcetype", "collection")
)
_LENGTH, _MODIFIED = _DAV + "getcontentlength", _DAV + "getlastmodified"
#: Characters a name taken from an href as it stands may not hold (else it is resolved).
_PLAIN_NAME = frozenset("/%?#\\\0")


class Listing:
    """A PROPFIND answer (a ``DAV:multistatus``) parsed as it arrives, within the limits of
    the module docstring.

    Measured on one core beside other work: 99,000 entries (26 MB) in 1.7-3.6 s; the handlers
    keep to what a listing needs (the depth, the texts of the five elements read), and an
    href of the form the server was asked in (``/pool/dir/name``) is taken without the full
    resolution, which the others get.
    """

    def __init__(
        self,
        url: str,
        server: Any,
        key: str,
        doing: str,
        response: Any,
        asked: Any,
        html_error: Callable[[], StorageServerError],
    ) -> None:
        """The listing of ``key`` of the pool ``url`` on ``server`` (an ``httpx.URL``),
        asked at the URL ``asked`` and answered by ``response``; ``html_error`` makes the
        error for an answer that turns out to be an HTML page."""
        self.url, self.server, self.key, self.doing = url, server, key, doing
        self.response = response
        self.html_error = html_error
        raw = asked.raw_path.decode("ascii").split("?", 1)[0]
        self.dir = segments(raw) or []
        self.prefix = raw.rstrip("/") + "/"  # the hrefs of its entries, as servers write them
        # hrefs resolve against the URL that answered (after redirects), on its server or
        # the pool's
        self.answered = response.request.url
        self.origins = {origin(server), origin(self.answered)}
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._doctype
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        self.parser = parser
        self.fed = 0
        self.start = b""
        self.depth = 0
        self.in_response = False
        self.top = self.sub = self.prop = ""  # the open elements at depths 3, 4 and 5
        self.text: list[str] | None = None
        self.text_bytes = 0
        self.href: str | None = None
        self.status: str | None = None
        self.ok: dict[str, Any] = {}
        self.props: dict[str, Any] = {}
        self.self_entry: Entry | None = None
        self.entries: dict[str, Entry] = {}

    def refuse(self, why: str) -> StorageServerError:
        """The error for a listing that ``why``."""
        return StorageServerError(
            f"cannot {self.doing} {where(self.url, self.key)}: the server's listing {why}"
        )

    # -- feeding -----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the answer.

        Raises:
            StorageServerError: the listing breaks a limit or is not XML.
        """
        if len(self.start) < 64:
            self.start += chunk[: 64 - len(self.start)]
        self.fed += len(chunk)
        if self.fed > MAX_LISTING_BYTES:
            raise self.refuse(
                f"is longer than {MAX_LISTING_BYTES:,} bytes (MAX_LISTING_BYTES): a "
                "misbehaving server, or a directory that is no pool's"
            )
        try:
            self.parser.Parse(chunk, False)
        except expat.ExpatError as exc:
            raise self._not_xml(exc) from None
        # what expat holds unparsed: the token it is in (a tag, a comment...)
        if self.fed - self.parser.CurrentByteIndex > MAX_XML_TOKEN:
            raise self.refuse(
                f"holds a tag, comment or other token longer than {MAX_XML_TOKEN:,} bytes: "
                "no WebDAV listing does"
            )

    def close(self) -> tuple[Entry | None, list[Entry]]:
        """``(the entry asked for, the entries inside it)`` once the answer has ended."""
        try:
            self.parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise self._not_xml(exc) from None
        return self.self_entry, list(self.entries.values())

    def _not_xml(self, exc: expat.ExpatError) -> StorageServerError:
        if is_html(self.response, self.start):
            return self.html_error()
        return self.refuse(
            f"is not well-formed XML ({expat.ErrorString(exc.code)} at line {exc.lineno}): "
            "not a WebDAV server, or a broken one"
        )

    # -- expat's handlers --------------------------------------------------------------------
    def _doctype(self, *_: Any) -> None:
        raise self.refuse(
            "declares a DTD (<!DOCTYPE ...>), which no WebDAV listing needs: refused (its "
            "entities could expand without end)"
        )

    def _start(self, name: str, _attrs: Any) -> None:
        self.depth += 1
        depth = self.depth
        if depth == 1:
            if name != _MULTISTATUS:
                if is_html(self.response, self.start):
                    raise self.html_error()
                raise self.refuse(
                    f"is XML but no WebDAV multistatus (its root is <{shown(name)}>): not a "
                    "WebDAV server?"
                )
        elif depth == 2:
            self.in_response = name == _RESPONSE
            if self.in_response:
                self.href = self.status = None
                self.ok = {}
        elif not self.in_response:
            if depth > MAX_XML_DEPTH:
                raise self.refuse(f"nests elements more than {MAX_XML_DEPTH} deep")
        elif depth == 3:
            self.top = name
            if name == _PROPSTAT:
                self.props = {}
            elif name in (_HREF, _STATUS):
                self._capture()
        elif depth == 4:
            self.sub = name if self.top == _PROPSTAT else ""
            if self.sub == _STATUS:
                self._capture()
        elif depth == 5:
            self.prop = name if self.sub == _PROP else ""
            if self.prop in (_LENGTH, _MODIFIED):
                self._capture()
        elif depth == 6:
            if name == _COLLECTION and self.prop == _RESOURCETYPE:
                self.props[_COLLECTION] = True
        elif depth > MAX_XML_DEPTH:
            raise self.refuse(f"nests elements more than {MAX_XML_DEPTH} deep")

    def _capture(self) -> None:
        self.text, self.text_bytes = [], 0

    def _text(self, data: str) -> None:
        text = self.text
        if text is not None:
            self.text_bytes += len(data)
            if self.text_bytes > MAX_XML_TOKEN:
                raise self.refuse(f"holds a text longer than {MAX_XML_TOKEN:,} bytes")
            text.append(data)

    def _end(self, name: str) -> None:
        depth = self.depth
        self.depth -= 1
        text = self.text
        value = ""
        if text is not None:
            self.text = None
            value = "".join(text).strip()
        if not self.in_response:
            return
        if depth == 5:
            if text is not None:
                self.props[name] = value
        elif depth == 4:
            if text is not None and name == _STATUS:
                self.props[_STATUS] = value
        elif depth == 3:
            if name == _HREF:
                self.href = value
            elif name == _STATUS:
                self.status = value
            elif name == _PROPSTAT and status_ok(self.props.get(_STATUS)):
                self.ok.update(self.props)
        elif depth == 2:
            self.in_response = False
            self._entry()

    # -- one response ------------------------------------------------------------------------
    def _entry(self) -> None:
        href = self.href
        if not href:
            raise self.refuse("has a response without an href")
        name = self._name(href)
        if self.status is not None and not status_ok(self.status):
            return  # an entry that vanished while the server listed (404)
        props = self.ok
        kind = "dir" if props.get(_COLLECTION) else "file"
        size = 0
        length = props.get(_LENGTH)
        if kind == "file" and length:
            if not length.isdigit() or len(length) > 19:
                raise self.refuse(f"gives {shown(href)} the size {shown(length)}: no size")
            size = int(length)
        mtime = http_date(props.get(_MODIFIED))
        if name is None:
            self.self_entry = Entry(self.dir[-1] if self.dir else "", kind, size, mtime)  # type: ignore[arg-type]
            return
        self.entries[name] = Entry(name, kind, size, mtime)  # type: ignore[arg-type]
        if len(self.entries) > MAX_LISTING_ENTRIES:
            raise too_many_entries(self.url, self.key)

    def _name(self, href: str) -> str | None:
        """The name of the entry ``href`` names directly inside the listed directory, or
        None for the directory itself; anything else refuses the listing."""
        if href.startswith(self.prefix):  # the usual form: /pool/dir/name[/]
            rest = href[len(self.prefix) :]
            rest = rest[:-1] if rest.endswith("/") else rest
            if not rest:
                return None
            if rest not in (".", "..") and _PLAIN_NAME.isdisjoint(rest):
                return rest
        return self._resolved(href)

    def _resolved(self, href: str) -> str | None:
        """:meth:`_name` in full: percent-decoding, dot segments, absolute URLs."""
        refused = self.refuse(
            f"names {shown(href)}, which is not the listed directory or an entry directly "
            f"inside it on {self.server}: refused (a misbehaving or hostile server)"
        )
        parts = urllib.parse.urlsplit(href)
        if parts.query or parts.fragment:
            raise refused
        if parts.scheme or parts.netloc:
            import httpx

            try:
                target = httpx.URL(href)
            except httpx.InvalidURL:
                raise refused from None
            if not target.host or origin(target) not in self.origins:
                raise refused
            path = parts.path
        elif parts.path.startswith("/"):
            path = parts.path
        else:  # relative to the collection that answered
            base = self.answered.raw_path.decode("ascii").split("?", 1)[0]
            path = base[: base.rfind("/") + 1] + parts.path
        names = segments(path)
        if names is None:
            raise refused
        if names == self.dir:
            return None
        if len(names) != len(self.dir) + 1 or names[:-1] != self.dir:
            raise refused
        return names[-1]


def status_ok(status: str | None) -> bool:
    """Whether a ``DAV:status`` line (``HTTP/1.1 200 OK``) says 2xx; a missing one does."""
    if status is None or status == "HTTP/1.1 200 OK":
        return True
    parts = status.split()
    return len(parts) >= 2 and parts[1].startswith("2")


@functools.lru_cache(maxsize=4096)
def http_date(text: str | None) -> float | None:
    """Seconds since the epoch of an HTTP date (``getlastmodified``), None if unreadable.

    Example:
        >>> http_date("Tue, 15 Nov 1994 12:45:26 GMT"), http_date("soon")
        (784903526.0, None)
    """
    if not text:
        return None
    try:
        return float(email.utils.parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


__all__ = [
    "MAX_XML_DEPTH",
    "MAX_XML_TOKEN",
    "PROPFIND_BODY",
    "Listing",
    "http_date",
    "is_html",
    "origin",
    "segments",
    "shown",
    "status_ok",
]
