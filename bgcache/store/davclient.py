"""The WebDAV requests of :mod:`bgcache.store.webdav`: bgcache's own, on httpx, every answer
read under the limits of :mod:`bgcache.store.remote_limits`.

:mod:`~bgcache.store.webdav` says what a pool needs of a WebDAV server (stat, list, ranged
read, write, rename, directories) and this module sends the requests and reads the answers,
taking nothing a server says on trust:

* **Deadline.** A request ends within its deadline, from connecting to the last byte of the
  answer, redirects included: every connect, TLS handshake, socket read and write under
  httpx waits at most until the deadline of the request under way in its thread
  (:func:`_deadline_backend`, a layer under httpcore's connections), so an answer dripped a
  byte at a time, or one shorter than its ``Content-Length`` on a connection kept open,
  ends at the deadline, not after an idle timeout per read.
* **Bodies** are read raw (``Accept-Encoding: identity``: no compressed answer to inflate)
  a piece at a time, and never held beyond the caller's cap
  (:func:`~bgcache.store.remote_limits.collect`).
* **Listings** (``PROPFIND``) are parsed as they arrive, within their bounds, every
  ``href`` resolved and checked (:class:`~bgcache.store.davlisting.Listing`), so no request
  ever leaves the pool's path.
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
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from bgcache.errors import MissingDependencyError, PoolWriteError, StorageServerError
from bgcache.store.davlisting import (
    PROPFIND_BODY,
    Listing,
    is_html,
    origin,
    segments,
    shown,
)
from bgcache.store.remote import Entry, TransientServerError
from bgcache.store.remote_limits import (
    CHUNK_BYTES,
    MAX_REDIRECTS,
    Deadline,
    collect,
    too_slow,
    where,
)

#: Bytes of an answer that is not read (an error page, a redirect's) that are read to keep
#: the connection; a longer one closes it.
DRAIN_BYTES = 1 << 16

_REDIRECTS = (301, 302, 303, 307, 308)
_SAFE = ("GET", "HEAD", "PROPFIND")

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
            f"{MAX_REDIRECTS} times (MAX_REDIRECTS), last to {shown(str(url))}: a redirect "
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
                f"{shown(location)}, which is no URL"
            )
        if target.scheme != self.base.scheme:
            raise StorageServerError(
                f"cannot {doing} {where(self.url, key)}: the server redirected to "
                f"{shown(str(target))}, another scheme than the pool's {self.base.scheme}: "
                "refused (a pool is read over the scheme of its URL only)"
            )
        if origin(target) == origin(self.base) and not self.inside(target):
            raise StorageServerError(
                f"cannot {doing} {where(self.url, key)}: the server redirected to "
                f"{shown(target.path)}, outside the pool's path {self.root}: refused"
            )
        return target

    def inside(self, url: Any) -> bool:
        """Whether ``url``'s path is the pool's path or lies under it."""
        mine = segments(self.base.copy_with(path=self.root).raw_path.decode("ascii"))
        theirs = segments(url.raw_path.decode("ascii").split("?", 1)[0])
        return mine is not None and theirs is not None and theirs[: len(mine)] == mine

    def body(self, response: Any, limit: int | None, over: Any, key: str) -> bytes:
        """The body of ``response``, at most ``limit`` bytes (more: ``over()`` is raised)."""
        deadline: Deadline = _local.deadline
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", ""):
            raise StorageServerError(
                f"cannot read {where(self.url, key)}: the server sent it encoded "
                f"({shown(encoding)}) though asked for it as stored (identity): refused"
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
        if status == 207:  # a MOVE or DELETE of which a part failed
            return PoolWriteError(f"cannot {doing} {at}: the server failed part of it (HTTP 207)")
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
            listing = Listing(
                self.url,
                self.base,
                key,
                doing,
                r,
                asked,
                lambda: self.html_error(r, key, doing, "a WebDAV listing"),
            )
            deadline: Deadline = _local.deadline
            for chunk in r.iter_raw(CHUNK_BYTES):
                listing.feed(chunk)
                if deadline.expired():
                    raise too_slow(self.url, key, self.timeout, doing)
            me, entries = listing.close()
            if me is None:
                raise listing.refuse("does not describe the path asked, only others")
            return me, entries


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


__all__ = ["DavClient", "may_send_token"]
