"""A local SMTP mail sink for the embedded stack: every message it receives is written to a .eml file.

GradeFlow's alerts go out through Airflow's SMTP provider exactly as they would to a real mail
server; here they land in `<state dir>/mail/<UTC time>-<n>.eml`, readable with any mail client or
`python -m email`-style parsing. No authentication, no TLS, localhost only.

    python -m devstack.mail_sink --port 2525 --dir .devstack/mail
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path


class _SaveToFolder:
    """aiosmtpd handler: one .eml per message, written atomically (tmp file, then rename)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{next(self.counter):04d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(path)
        return "250 Message accepted for delivery"


def serve(host: str, port: int, folder: Path):
    """Start the sink in a background thread; returns the aiosmtpd Controller (call .stop() to end it)."""
    from aiosmtpd.controller import Controller

    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(_SaveToFolder(folder), hostname=host, port=port)
    controller.start()
    return controller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="folder for the received .eml files")
    args = parser.parse_args(argv)
    controller = serve(args.host, args.port, args.dir)
    print(f"mail sink on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
