"""`IncomingFile`: one file of an ingest sweep as one value, handed to every step that records and loads it.

The ingest steps (gradeflow.intake.ingest, and gradeflow.intake.review_files for reviewers' files) used to
thread the same six or seven arguments (institution, connection, parsed key, file id, name, bytes, ...) through
every function; they take an `IncomingFile` (and the connection and S3 client they work with) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from gradeflow.core.config import Institution
    from gradeflow.core.storage import S3Object
    from gradeflow.intake.contract import IncomingPath


@dataclass(frozen=True)
class IncomingFile:
    """One incoming file: whose it is, where it lies, what its key says, its bytes; its id once recorded.

    `obj` is the listed S3 object (key, size, arrival time); `parsed` is what its key says
    (gradeflow.intake.contract.parse_incoming_key; None when it is not a recognised path); `day` is its day
    folder (today in the institution's zone for an unrecognised path). `data` is the spooled bytes
    (gradeflow.core.storage.read_spooled), read once by the step that loads them.
    `file_id` is its `ingested_files` row, None until the file is recorded. `checks`: for a submissions file, the
    known questions and rejected exams its transaction read, which its rows are checked against.
    """

    inst: Institution
    obj: S3Object
    parsed: IncomingPath | None
    day: date
    sha: str
    data: IO[bytes]
    file_id: int | None = None
    checks: tuple[dict[str, set[str]], dict[str, str]] | None = None  # known questions, rejected exams (submissions)

    @property
    def key(self) -> str:
        """Where the file lies: incoming/<prefix>/<day>/<kind>/<name>."""
        return self.obj.key

    @property
    def name(self) -> str:
        """The file's name, the last part of its key."""
        return self.obj.key.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        """exam | submissions | reviews | unknown (what the key's folder says)."""
        return self.parsed.kind if self.parsed else "unknown"
