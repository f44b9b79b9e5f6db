"""A real WebDAV server (wsgidav on cheroot) for the grid tests, with WLCG-style bearer tokens.

Test-only. wsgidav serves ``ROOT`` on 127.0.0.1:``PORT``; in front of it a few lines stand
in for a storage element's token validation (wsgidav itself knows basic and digest
authentication only): a request must carry ``Authorization: Bearer <token>`` with one of

* ``rw-token``: everything;
* ``ro-token``: reading only (``GET``, ``HEAD``, ``PROPFIND``, ``OPTIONS``); writes get 403;
* ``expired-token``: 401, as for an expired token;

and anything else (no token included) gets 401. With ``--anonymous`` no token is needed.

Usage: ``python tests/webdav_server.py ROOT PORT [--anonymous]``
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

READS = {"GET", "HEAD", "PROPFIND", "OPTIONS"}


def with_tokens(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def check(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
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
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
