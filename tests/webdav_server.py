"""A real WebDAV server (wsgidav on cheroot) for the grid tests, with WLCG-style bearer tokens.

Test-only. wsgidav serves ``ROOT`` on 127.0.0.1:``PORT``; in front of it a few lines stand
in for a storage element's token validation (wsgidav itself knows basic and digest
authentication only): a request must carry ``Authorization: Bearer <token>`` with one of

* ``rw-token``: everything;
* ``ro-token``: reading only (``GET``, ``HEAD``, ``PROPFIND``, ``OPTIONS``); writes get 403;
* ``expired-token``: 401, as for an expired token;

and anything else (no token included) gets 401. With ``--anonymous`` no token is needed.

With ``--tls CERT KEY CADIR`` it serves HTTPS (``davs://``) with that host certificate, as
a storage element does: a client may present an X.509 certificate, RFC 3820 proxies
accepted, verified against the CA directory ``CADIR``; one that verifies may do everything
(the stand-in for a grid-mapfile that maps every user of the CA), without a token.

Usage: ``python tests/webdav_server.py ROOT PORT [--anonymous] [--tls CERT KEY CADIR]``
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

READS = {"GET", "HEAD", "PROPFIND", "OPTIONS"}


def with_tokens(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def check(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("SSL_CLIENT_VERIFY") == "SUCCESS":  # a proxy of a user the CA made
            return app(environ, start_response)
        token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if token == "rw-token" or (token == "ro-token" and environ["REQUEST_METHOD"] in READS):
            return app(environ, start_response)
        status = "403 Forbidden" if token == "ro-token" else "401 Unauthorized"
        start_response(status, [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
        return [status.encode()]

    return check


def main() -> int:
    root, port = sys.argv[1], int(sys.argv[2])
    anonymous = "--anonymous" in sys.argv[3:]
    config = {
        "host": "127.0.0.1",
        "port": port,
        "provider_mapping": {"/": root},
        "simple_dc": {"user_mapping": {"*": True}},  # wsgidav's own auth: anonymous
        "verbose": 1,
        "logging": {"enable_loggers": []},
    }
    app: Any = WsgiDAVApp(config)
    if not anonymous:
        app = with_tokens(app)
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=8)
    if "--tls" in sys.argv:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        cert, key, cadir = sys.argv[sys.argv.index("--tls") + 1 :][:3]
        adapter = BuiltinSSLAdapter(cert, key)
        adapter.context.load_verify_locations(capath=cadir)
        adapter.context.verify_mode = ssl.CERT_OPTIONAL  # a token instead is fine too
        adapter.context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
        server.ssl_adapter = adapter
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
