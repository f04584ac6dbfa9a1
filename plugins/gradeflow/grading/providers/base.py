"""The BatchProvider interface and the registry that picks a provider by name.

A provider's batch object (`retrieve`, `create`, `cancel`, `list_batches`) has the Batch API's shape
(the SDK's `openai.types.Batch`: id, status, output_file_id, error_file_id, request_counts, errors,
metadata), and its result lines have the Batch API's output/error-file shape
(`{"custom_id", "response": {"status_code", "body"}, "error"}`), whatever the provider does
underneath: the night, collect and the ledger are written once against that shape.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from gradeflow.grading import batch

if TYPE_CHECKING:
    from gradeflow.core.config import Institution, OpenAISettings


class ProviderError(RuntimeError):
    """A provider is unknown, misconfigured, or asked for something it cannot do."""


@dataclass(frozen=True)
class Limits:
    """What one batch of this provider may hold, and the organisation-wide queue it shares (if any)."""

    max_lines: int
    max_bytes: int
    enqueued_token_cap: int | None  # None: no shared queue of enqueued tokens (nothing to reserve)
    institution_cap: int | None = None  # the most of that cap one institution may hold at once


class BatchProvider(abc.ABC):
    """One model service that runs a JSONL file of chat-completion requests as a batch.

    `runs_locally` says where the work runs: False for a remote batch service (the night only waits,
    deferred, for it to finish), True when the provider itself sends the requests; then the night
    calls `work(batch_id)` in each of its short steps (a bounded chunk per call, progress stored so
    that a killed worker resumes without sending a finished line again).
    """

    name: ClassVar[str]
    runs_locally: ClassVar[bool] = False
    step_pause_seconds: float = 2.0  # a local batch: how long the night defers between two chunks

    def __init__(self, inst: Institution | None = None, settings: OpenAISettings | None = None) -> None:
        self.inst = inst
        self.settings = settings

    # -------------------------------------------------------------------------------------- files
    @abc.abstractmethod
    def upload(self, name: str, data: bytes, source_key: str | None = None) -> str:
        """Make the JSONL input file available to the service; return its file id.

        `source_key` is where the same bytes already are in the project's bucket (a local batch reads
        them there instead of keeping a second copy)."""

    @abc.abstractmethod
    def iter_lines(self, file_id: str | None) -> Iterator[dict]:
        """The lines of a result (output or error) file, parsed, streamed; nothing for None."""

    def iter_raw_lines(self, file_id: str | None) -> Iterator[str | bytes | dict]:
        """The same lines as their JSON text, unparsed (collect reads them with `batch.read_line`, faster than
        `json.loads`); a provider without the text yields iter_lines' dicts."""
        yield from self.iter_lines(file_id)

    # ------------------------------------------------------------------------------------ batches
    @abc.abstractmethod
    def create(self, file_id: str, metadata: dict[str, str]) -> Any:
        """Create a batch over the input file, tagged with `metadata` (<= 16 keys, values <= 512 chars)."""

    @abc.abstractmethod
    def retrieve(self, batch_id: str) -> Any:
        """The batch's current state."""

    @abc.abstractmethod
    def cancel(self, batch_id: str) -> Any:
        """Ask the service to stop the batch (finished lines are still delivered)."""

    @abc.abstractmethod
    def list_batches(self) -> Iterator[Any]:
        """The provider's batches, newest first (to find one again by the metadata it was made with)."""

    def work(self, batch_id: str, budget_seconds: float | None = None) -> Any:
        """Move a local batch on by one bounded chunk and return its state; a remote batch needs nothing."""
        return self.retrieve(batch_id)

    # ------------------------------------------------------------------------------------- limits
    def limits(self) -> Limits:
        """The per-batch limits (from the institution) and the shared enqueued-token cap (if any)."""
        inst = self.inst
        return Limits(max_lines=inst.max_requests_per_batch if inst else 50_000,
                      max_bytes=inst.max_batch_bytes if inst else 200 * 1024 * 1024,
                      enqueued_token_cap=None)

    def count_tokens(self, body: dict, model: str | None = None) -> int:
        """Input tokens of one request body, counted offline with the model's BPE (exact on OpenAI models;
        an estimate for another model family behind a compatible endpoint)."""
        return batch.prompt_tokens(body, batch.encoding_for(model or str(body.get("model") or "")))

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """The price of these tokens, from the institution's per-million prices."""
        return self.inst.cost_usd(input_tokens, output_tokens) if self.inst else 0.0

    def close(self) -> None:  # noqa: B027 (optional hook: most providers hold nothing to release)
        """Release connections (nothing by default)."""


PROVIDERS: dict[str, Callable[..., BatchProvider]] = {}


def register(name: str) -> Callable[[type[BatchProvider]], type[BatchProvider]]:
    """Class decorator: make a provider available by `name` (the value of `provider:` in institutions.yaml)."""
    def add(cls: type[BatchProvider]) -> type[BatchProvider]:
        cls.name = name
        PROVIDERS[name] = cls
        return cls
    return add
