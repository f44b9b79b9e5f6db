"""The WebDAV requests of :mod:`bgcache.store.webdav`: bgcache's own, on httpx, every answer
read under the limits of :mod:`bgcache.store.remote_limits`.

:mod:`~bgcache.store.webdav` says what a pool needs of a WebDAV server (stat, list, ranged
read, write, rename, directories) and this module sends the requests and reads the answers,
taking nothing a server says on trust:

* **Deadline.** A request ends within its deadline, from connecting to the last byte of the
  answer, redirects included: every connect, TLS handshake, socket read and write under
  httpx waits at most until the deadline of the request under way in its thread
  (:class:`_DeadlineBackend`, a layer under httpcore's connections), so an answer dripped a
  byte at a time, or one shorter than its ``Content-Length`` on a connection kept open,
  ends at the deadline, not after an idle timeout per read.
* **Bodies** are read raw (``Accept-Encoding: identity``: no compressed answer to inflate)
  a piece at a time, and never held beyond the caller's cap
  (:func:`~bgcache.store.remote_limits.collect`).
* **Listings** (``PROPFIND``) are parsed by expat as they arrive: no DTD (so no entity can
  be declared, let alone expanded), at most :data:`~bgcache.store.remote_limits.MAX_LISTING_BYTES`
  bytes and :data:`~bgcache.store.remote_limits.MAX_LISTING_ENTRIES` entries, elements
  :data:`MAX_XML_DEPTH` deep, a text or tag of at most :data:`MAX_XML_TOKEN` bytes. Every
  ``href`` is resolved (percent-decoding, ``.``, ``..``, ``/`` inside a name, an absolute
  URL) and must name the listed directory itself or an entry directly inside it on the
  server asked; any other refuses the listing, so no request ever leaves the pool's path.
* **Redirects** are followed up to :data:`~bgcache.store.remote_limits.MAX_REDIRECTS` times
  and only to the pool's scheme (``https`` for ``davs://``): dCache and StoRM doors redirect
  a ``GET`` or ``PUT`` to a pool node on another host, which is followed; a redirect on the
  pool's own server must stay inside the pool's path. A ``PUT``, ``MOVE``, ``MKCOL`` or
  ``DELETE`` follows only 307 and 308 (which keep the method and body).
* **The bearer token** goes to the pool's host (any port), and after a redirect to another
  host only over HTTPS to one in the pool host's domain (its name without the first label:
  ``door.example.org`` sends it to ``pool7.example.org``, never to another domain or an IP
  address); elsewhere the redirected request goes without it (a dCache pool's redirect
  URL carries its own one-time credential). The X.509 proxy is the TLS client certificate
  of every connection, as for every grid client.
* **An answer that is not what was asked** (an HTML page: a login or error page; a 200 to a
  ``PROPFIND``; a listing that is not XML) is named as the server's answer, not as damage.

Proxies: ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY`` apply as for the
pool's host.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any
from xml.parsers import expat

from bgcache.errors import MissingDependencyError, PoolWriteError, StorageServerError
from bgcache.store.remote import Entry, TransientServerError
from bgcache.store.remote_limits import (
    CHUNK_BYTES,
    MAX_LISTING_BYTES,
    MAX_LISTING_ENTRIES,
    MAX_REDIRECTS,
    Deadline,
    collect,
    too_many_entries,
    too_slow,
    where,
)

#: Elements a listing may nest (a multistatus is 6 deep).
MAX_XML_DEPTH = 32
#: Bytes of one text, tag or other token of a listing (an href of a 4 KiB path, encoded).
MAX_XML_TOKEN = 1 << 16
#: Bytes of an answer that is not read (an error page, a redirect's) that are read to keep
#: the connection; a longer one closes it.
DRAIN_BYTES = 1 << 16

_REDIRECTS = (301, 302, 303, 307, 308)
_SAFE = ("GET", "HEAD", "PROPFIND")
_DAV = "DAV: "
#: What a PROPFIND asks for: the three properties a pool's listing needs.
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"
)

_local = threading.local()


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError(
            "davs:// and https:// pools need httpx: pip install 'bgcache[webdav]'"
        ) from None
    return httpx


# -- the deadline, under httpx ---------------------------------------------------------------
def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the current request's deadline."""
    deadline: Deadline | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


def _deadline_backend(inner: Any) -> Any:
    """httpcore's network backend ``inner`` with every wait cut to the request's deadline."""
    import httpcore

    class Stream(httpcore.NetworkStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            data: bytes = self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))
            return data

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> Any:
            left = _left(timeout, httpcore.ConnectTimeout)
            return Stream(self._stream.start_tls(ssl_context, server_hostname, left))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            left = _left(timeout, httpcore.ConnectTimeout)
            return Stream(inner.connect_tcp(host, port, left, local_address, socket_options))

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> Any:
            left = _left(timeout, httpcore.ConnectTimeout)
            return Stream(inner.connect_unix_socket(path, left, socket_options))

        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    return Backend()


def _transport(verify: ssl.SSLContext | bool, proxy: str | None) -> Any:
    """An httpx transport whose connections keep the deadline (see :func:`_deadline_backend`).

    httpx has no public way to hand httpcore a network backend: the one its connection pool
    made is wrapped in place (httpcore 1.0's ``ConnectionPool._network_backend``, which it
    gives each new connection); a test (``tests/test_dav_lies.py``) holds it.
    """
    httpx = _httpx()
    transport = httpx.HTTPTransport(verify=verify, proxy=proxy, retries=0)
    pool = transport._pool
    pool._network_backend = _deadline_backend(pool._network_backend)
    return transport


def _env_proxy(base: Any) -> str | None:
    """The proxy the environment names for the pool's host (None: connect directly)."""
    if urllib.request.proxy_bypass(base.host):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(base.scheme) or proxies.get("all")
    return str(proxy) if proxy else None


# -- names -----------------------------------------------------------------------------------
def _origin(url: Any) -> tuple[str, str, int]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host.lower(), port


def _segments(raw_path: str) -> list[str] | None:
    """The decoded segments of a percent-encoded path, or None if one of them is ``.``,
    ``..``, or decodes to something holding ``/``, a backslash or a NUL (never a pool's).

    Example:
        >>> _segments("/pool/a%20b/"), _segments("/pool/%2e%2e%2f"), _segments("/pool/../x")
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


def may_send_token(pool: Any, target: Any) -> bool:
    """Whether a request to ``target`` (after a redirect) may carry the bearer token.

    Example:
        >>> import httpx
        >>> door = httpx.URL("https://door.example.org:2880/belle/pool")
        >>> [may_send_token(door, httpx.URL(u)) for u in ("https://door.example.org:2881/x",
        ...     "https://pool7.example.org/x", "https://example.com/x", "https://10.1.2.3/x")]
        [True, True, False, False]
    """
    host, door = target.host.lower(), pool.host.lower()
    if host == door:
        return True
    if target.scheme != "https" or _is_address(host) or _is_address(door):
        return False
    labels = door.split(".")
    return len(labels) >= 3 and host.endswith("." + ".".join(labels[1:]))


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_html(response: Any, start: bytes = b"") -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    head = start[:64].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return kind in ("text/html", "application/xhtml+xml") or head.startswith(
        (b"<!doctype html", b"<html")
    )


# -- the client ------------------------------------------------------------------------------
class DavClient:
    """Requests to one WebDAV pool: its server ``base`` and path ``root``.

    Args:
        base: ``https://host[:port]`` (or ``http://``).
        root: the pool's path on the server (``/belle/pools/convnet``).
        url: the pool's URL as errors name it.
        timeout: the deadline of one request, in seconds.
        verify: the TLS context (``https``), or True.
        token: the bearer token, or None.
    """

    def __init__(
        self,
        base: str,
        root: str,
        url: str,
        timeout: float,
        verify: ssl.SSLContext | bool,
        token: str | None,
    ) -> None:
        httpx = _httpx()
        self._httpx = httpx
        self.base = httpx.URL(base)
        self.root = root
        self.url = url
        self.timeout = timeout
        self._token = token
        self.http = httpx.Client(
            transport=_transport(verify, _env_proxy(self.base)),
            timeout=timeout,  # each wait; the deadline cuts it (see _deadline_backend)
            follow_redirects=False,  # followed by exchange(), under its rules
        )

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def address(self, key: str) -> Any:
        """The URL of ``key`` (a path relative to the pool root)."""
        path = f"{self.root}/{key}" if key else self.root
        return self.base.copy_with(path=path)

    # -- one request -----------------------------------------------------------------------
    @contextlib.contextmanager
    def exchange(
        self,
        method: str,
        key: str,
        doing: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        target: Any = None,
    ) -> Iterator[Any]:
        """The answer to one request on ``key`` (redirects followed), its body unread; the
        deadline holds until the block ends, and the answer is closed then.

        Raises:
            StorageServerError: a redirect loop, a redirect elsewhere than allowed, or no
                complete answer by the deadline. PoolWriteError: the server cannot be
                reached (TransientServerError: the answer was cut short).
        """
        deadline = Deadline(self.timeout)
        outer = getattr(_local, "deadline", None)
        _local.deadline = deadline
        response = None
        answers: list[int] = []  # the statuses of the answers so far (redirects included)
        try:
            response = self._send(method, key, doing, headers or {}, content, target, answers)
            yield response
        except self._httpx.HTTPError as exc:
            raise self.transport_error(exc, key, doing, deadline, bool(answers)) from None
        finally:
            if response is not None:
                response.close()
            _local.deadline = outer

    def _send(
        self,
        method: str,
        key: str,
        doing: str,
        headers: dict[str, str],
        content: bytes | None,
        target: Any,
        answers: list[int],
    ) -> Any:
        url = target if target is not None else self.address(key)
        for _ in range(MAX_REDIRECTS + 1):
            sent = {"Accept-Encoding": "identity", **headers}
            if self._token and may_send_token(self.base, url):
                sent["Authorization"] = f"Bearer {self._token}"
            request = self.http.build_request(method, url, headers=sent, content=content)
            response = self.http.send(request, stream=True)
            answers.append(response.status_code)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            status = response.status_code
            self.drain(response)
            if method not in _SAFE and status not in (307, 308):
                raise StorageServerError(
                    f"cannot {doing} {where(self.url, key)}: the server answered a {method} "
                    f"with a redirect (HTTP {status}) that would turn it into a GET: refused"
                )
            url = self._redirect(url, location, key, doing)
        raise StorageServerError(
            f"cannot {doing} {where(self.url, key)}: the server redirected more than "
            f"{MAX_REDIRECTS} times (MAX_REDIRECTS), last to {_shown(str(url))}: a redirect "
            "loop? check the URL, or the server's configuration"
        )

    def _redirect(self, url: Any, location: str, key: str, doing: str) -> Any:
        """The URL a redirect to ``location`` leads to, once the rules allow it."""
        try:
            target = url.join(location)
        except self._httpx.InvalidURL:
            target = None
        if target is None or not target.host:
            raise StorageServerError(
                f"cannot {doing} {where(self.url, key)}: the server redirected to "
                f"{_shown(location)}, which is no URL"
            )
        if target.scheme != self.base.scheme:
            raise StorageServerError(
                f"cannot {doing} {where(self.url, key)}: the server redirected to "
                f"{_shown(str(target))}, another scheme than the pool's {self.base.scheme}: "
                "refused (a pool is read over the scheme of its URL only)"
            )
        if _origin(target) == _origin(self.base) and not self.inside(target):
            raise StorageServerError(
                f"cannot {doing} {where(self.url, key)}: the server redirected to "
                f"{_shown(target.path)}, outside the pool's path {self.root}: refused"
            )
        return target

    def inside(self, url: Any) -> bool:
        """Whether ``url``'s path is the pool's path or lies under it."""
        mine = _segments(self.base.copy_with(path=self.root).raw_path.decode("ascii"))
        theirs = _segments(url.raw_path.decode("ascii").split("?", 1)[0])
        return mine is not None and theirs is not None and theirs[: len(mine)] == mine

    def body(self, response: Any, limit: int | None, over: Any, key: str) -> bytes:
        """The body of ``response``, at most ``limit`` bytes (more: ``over()`` is raised)."""
        deadline: Deadline = _local.deadline
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", ""):
            raise StorageServerError(
                f"cannot read {where(self.url, key)}: the server sent it encoded "
                f"({_shown(encoding)}) though asked for it as stored (identity): refused"
            )
        return collect(
            response.iter_raw(CHUNK_BYTES),
            limit,
            deadline,
            over=over,
            late=lambda: too_slow(self.url, key, self.timeout),
        )

    def drain(self, response: Any) -> None:
        """Read a small answer that is not needed, so that its connection stays usable."""
        with contextlib.suppress(StorageServerError, self._httpx.HTTPError):
            self.body(response, DRAIN_BYTES, lambda: StorageServerError("long"), "")
        response.close()

    # -- errors ----------------------------------------------------------------------------
    def transport_error(
        self, exc: BaseException, key: str, doing: str, deadline: Deadline, answered: bool
    ) -> Exception:
        """The error for an exception of httpx (``answered``: the server had begun to
        answer, or had answered a redirect)."""
        httpx = self._httpx
        tls = _tls_refusal(str(exc))
        if tls:
            return PoolWriteError(f"cannot {doing} {where(self.url, key)}: {tls}")
        waited = answered or isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout)
        if waited and isinstance(exc, httpx.TimeoutException) and deadline.expired():
            return too_slow(self.url, key, self.timeout, doing)
        if isinstance(exc, httpx.TimeoutException | httpx.ConnectError | httpx.NetworkError):
            return PoolWriteError(
                f"cannot {doing} {where(self.url, key)}: the server does not answer "
                f"({type(exc).__name__}); check the host and port of {self.base} (deadline "
                f"{self.timeout:g} s, $BGCACHE_REMOTE_TIMEOUT)"
            )
        message = f"cannot {doing} {where(self.url, key)}: {type(exc).__name__}"
        if isinstance(exc, httpx.RemoteProtocolError):  # an answer cut short
            return TransientServerError(message)  # tried again where that is safe
        return PoolWriteError(message)

    def status_error(self, response: Any, key: str, doing: str) -> Exception:
        """The error for an answer whose status is an error (4xx, 5xx) or unexpected."""
        status = response.status_code
        at = where(self.url, key)
        if status in (401, 403):
            what = "credentials refused" if status == 401 else "permission denied"
            return PoolWriteError(
                f"cannot {doing} {at}: {what} (HTTP {status}); check the bearer token "
                "($BEARER_TOKEN, $BEARER_TOKEN_FILE) or the X.509 proxy ($X509_USER_PROXY): "
                "renew an expired one, or use a path you may write"
            )
        if status == 507:
            return PoolWriteError(
                f"cannot {doing} {at}: the server has no space left (HTTP 507); free space "
                "or choose another storage element"
            )
        if status >= 500:
            return TransientServerError(f"cannot {doing} {at}: HTTP {status}")
        if status < 400:
            return StorageServerError(
                f"cannot {doing} {at}: the server answered HTTP {status}, which is no answer "
                "to this request: a misbehaving server"
            )
        return PoolWriteError(f"cannot {doing} {at}: HTTP {status}")

    def html_error(self, response: Any, key: str, doing: str, wanted: str) -> StorageServerError:
        """The error for an HTML page where ``wanted`` was asked for."""
        return StorageServerError(
            f"cannot {doing} {where(self.url, key)}: the server answered an HTML page "
            f"(HTTP {response.status_code}), not {wanted}: a login or error page? check the "
            "URL and the credentials ($BEARER_TOKEN, $X509_USER_PROXY)"
        )

    # -- PROPFIND ----------------------------------------------------------------------------
    def propfind(
        self, key: str, depth: str, doing: str, target: Any = None
    ) -> tuple[Entry, list[Entry]] | None:
        """``(the entry of key itself, the entries directly inside it)`` from one PROPFIND
        of ``depth`` ``"0"`` or ``"1"`` (of ``target``, a URL on the server, where given);
        None if it does not exist.

        Raises:
            StorageServerError: the answer is no WebDAV listing, breaks a limit, or names a
                path that is neither ``key`` nor directly inside it.
        """
        headers = {"Depth": depth, "Content-Type": "application/xml; charset=utf-8"}
        with self.exchange(
            "PROPFIND", key, doing, headers=headers, content=PROPFIND_BODY, target=target
        ) as r:
            if r.status_code == 404:
                self.drain(r)
                return None
            if r.status_code != 207:
                if 200 <= r.status_code < 300 and is_html(r):
                    raise self.html_error(r, key, doing, "a WebDAV listing")
                if r.status_code >= 400:
                    self.drain(r)
                    raise self.status_error(r, key, doing)
                raise StorageServerError(
                    f"cannot {doing} {where(self.url, key)}: the server answered a PROPFIND "
                    f"with HTTP {r.status_code}, not a WebDAV listing (207 Multi-Status): is "
                    f"{self.base} a WebDAV server?"
                )
            asked = target if target is not None else self.address(key)
            listing = _Listing(self, key, doing, r, asked)
            deadline: Deadline = _local.deadline
            for chunk in r.iter_raw(CHUNK_BYTES):
                listing.feed(chunk)
                if deadline.expired():
                    raise too_slow(self.url, key, self.timeout, doing)
            me, entries = listing.close()
            if me is None:
                raise listing.refuse("does not describe the path asked, only others")
            return me, entries


_MULTISTATUS, _RESPONSE, _HREF, _STATUS = (
    _DAV + n for n in ("multistatus", "response", "href", "status")
)
_PROPSTAT, _PROP, _RESOURCETYPE, _COLLECTION = (
    _DAV + n for n in ("propstat", "prop", "resourcetype", "collection")
)
_LENGTH, _MODIFIED = _DAV + "getcontentlength", _DAV + "getlastmodified"
#: Characters a name taken from an href as it stands may not hold (else it is resolved).
_PLAIN_NAME = frozenset("/%?#\\\0")


class _Listing:
    """A PROPFIND answer (a ``DAV:multistatus``) parsed as it arrives, within the limits of
    the module docstring.

    Measured on one core beside other work: 99,000 entries (26 MB) in 1.7-2.2 s; the handlers
    keep to what a listing needs (the depth, the texts of the five elements read), and an
    href of the form the server was asked in (``/pool/dir/name``) is taken without the full
    resolution, which the others get.
    """

    def __init__(self, client: DavClient, key: str, doing: str, response: Any, asked: Any) -> None:
        self.client, self.key, self.doing = client, key, doing
        self.response = response
        raw = asked.raw_path.decode("ascii").split("?", 1)[0]
        self.dir = _segments(raw) or []
        self.prefix = raw.rstrip("/") + "/"  # the hrefs of its entries, as servers write them
        # hrefs resolve against the URL that answered (after redirects), on its server or
        # the pool's
        self.answered = response.request.url
        self.origins = {_origin(client.base), _origin(self.answered)}
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
            f"cannot {self.doing} {where(self.client.url, self.key)}: the server's listing {why}"
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
            return self.client.html_error(self.response, self.key, self.doing, "a WebDAV listing")
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
                    raise self.client.html_error(
                        self.response, self.key, self.doing, "a WebDAV listing"
                    )
                raise self.refuse(
                    f"is XML but no WebDAV multistatus (its root is <{_shown(name)}>): not a "
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
            elif name == _PROPSTAT and _status_ok(self.props.get(_STATUS)):
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
        if self.status is not None and not _status_ok(self.status):
            return  # an entry that vanished while the server listed (404)
        props = self.ok
        kind = "dir" if props.get(_COLLECTION) else "file"
        size = 0
        length = props.get(_LENGTH)
        if kind == "file" and length:
            if not length.isdigit() or len(length) > 19:
                raise self.refuse(f"gives {_shown(href)} the size {_shown(length)}: no size")
            size = int(length)
        mtime = _http_date(props.get(_MODIFIED))
        if name is None:
            self.self_entry = Entry(self.dir[-1] if self.dir else "", kind, size, mtime)  # type: ignore[arg-type]
            return
        self.entries[name] = Entry(name, kind, size, mtime)  # type: ignore[arg-type]
        if len(self.entries) > MAX_LISTING_ENTRIES:
            raise too_many_entries(self.client.url, self.key)

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
            f"names {_shown(href)}, which is not the listed directory or an entry directly "
            f"inside it on {self.client.base}: refused (a misbehaving or hostile server)"
        )
        parts = urllib.parse.urlsplit(href)
        if parts.query or parts.fragment:
            raise refused
        if parts.scheme or parts.netloc:
            try:
                target = self.client._httpx.URL(href)
            except self.client._httpx.InvalidURL:
                raise refused from None
            if not target.host or _origin(target) not in self.origins:
                raise refused
            path = parts.path
        elif parts.path.startswith("/"):
            path = parts.path
        else:  # relative to the collection that answered
            base = self.answered.raw_path.decode("ascii").split("?", 1)[0]
            path = base[: base.rfind("/") + 1] + parts.path
        segments = _segments(path)
        if segments is None:
            raise refused
        if segments == self.dir:
            return None
        if len(segments) != len(self.dir) + 1 or segments[:-1] != self.dir:
            raise refused
        return segments[-1]


def _status_ok(status: str | None) -> bool:
    """Whether a ``DAV:status`` line (``HTTP/1.1 200 OK``) says 2xx; a missing one does."""
    if status is None or status == "HTTP/1.1 200 OK":
        return True
    parts = status.split()
    return len(parts) >= 2 and parts[1].startswith("2")


@functools.lru_cache(maxsize=4096)
def _http_date(text: str | None) -> float | None:
    """Seconds since the epoch of an HTTP date (``getlastmodified``), None if unreadable.

    Example:
        >>> _http_date("Tue, 15 Nov 1994 12:45:26 GMT"), _http_date("soon")
        (784903526.0, None)
    """
    if not text:
        return None
    try:
        return float(email.utils.parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _shown(text: str) -> str:
    """``text`` as an error line may show it: quoted, one line, at most 120 characters."""
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _tls_refusal(text: str) -> str | None:
    """What a TLS error of ``text`` means for the user, or None if it is none.

    Example:
        >>> _tls_refusal("[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate "
        ...     "expired (_ssl.c:2580)")[:62]
        'the server refused the client certificate (certificate expired'
    """
    if not text.startswith("[SSL: "):
        return None
    reason = text.partition("] ")[2].rsplit(" (_ssl", 1)[0]
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = reason.partition("certificate verify failed: ")[2] or reason
        return (
            f"the server's certificate does not verify ({detail}); set X509_CERT_DIR to "
            "the grid CA directory (e.g. /etc/grid-security/certificates)"
        )
    if "ALERT" in text:
        detail = reason.split(" alert ", 1)[-1]
        return (
            f"the server refused the client certificate ({detail}); renew the proxy in "
            "$X509_USER_PROXY (voms-proxy-init), or use a bearer token ($BEARER_TOKEN)"
        )
    return f"TLS failed ({reason})"


__all__ = ["PROPFIND_BODY", "DavClient", "is_html", "may_send_token"]
