"""The embedded stack's S3 server: moto's own server (`python -m moto.server`), less one cost it pays per request.

For every request moto's WSGI dispatcher asks whether the request's host names one of moto's service packages, and
finds out by listing moto's package folder and `stat`-ing each of its ~170 entries (`moto.backends.
list_of_moto_modules`): ~0.7 ms of CPU a request, about a fifth of what the server spends on a small S3 request
(3-4 ms). The folder does not change while the server runs, so here it is listed once. Everything else is moto's:
the same server, request handler, S3 backend and responses.

    python -m devstack.s3_server -H 127.0.0.1 -p PORT   # the arguments of `python -m moto.server`
"""

from __future__ import annotations

import functools

from moto import backends
from moto.server import main

_list_modules = backends.list_of_moto_modules


@functools.cache
def _moto_modules() -> tuple[str, ...]:
    return tuple(_list_modules())


backends.list_of_moto_modules = _moto_modules  # read by moto's dispatcher at each request (moto_server/werkzeug_app)

if __name__ == "__main__":
    main()
