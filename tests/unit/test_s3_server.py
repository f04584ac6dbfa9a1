"""The embedded stack's S3 server is moto's, with moto's package folder listed once instead of at every request
(devstack/s3_server.py; issue 13 item 6: ~0.7 ms of the server's ~3-4 ms of CPU per S3 request)."""

from __future__ import annotations

import inspect

from devstack import s3_server, stack


def test_the_stack_starts_moto_through_the_s3_server_module():
    assert '"-m", "devstack.s3_server"' in inspect.getsource(stack.up)


def test_motos_dispatcher_gets_the_same_packages_listed_once():
    from moto import backends

    listed = s3_server._moto_modules()
    assert backends.list_of_moto_modules is s3_server._moto_modules  # what moto's dispatcher calls per request
    assert listed == tuple(s3_server._list_modules()) and "s3" in listed  # moto's own listing, unchanged
    assert s3_server._moto_modules() is listed  # the folder is not listed again
