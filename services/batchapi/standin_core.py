"""The state and behaviour of the batch stand-in, apart from its HTTP edge.

:class:`BatchStore` holds the files, the batches and the submission counts
and decides every request's fate (faults, expiry, slow completion);
:mod:`services.batchapi.standin_routes` speaks the protocols over it and
:class:`services.batchapi.standin.BatchStandIn` serves them. A STAND-IN, not
the providers' service.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.devkit.fault_server import answer_for

#: Marker in an item's text that makes every attempt of its request fail.
ALWAYS_FAIL = "FAULT:always"
#: Marker in an item's text that makes every answer to it unparseable (a refusal).
ALWAYS_GARBAGE = "FAULT:garbage"
REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass
class StandInConfig:
    """Behaviour of the stand-in (all faults off by default)."""

    #: Share of requests answered with an error (drawn per custom_id).
    error_rate: float = 0.0
    #: Share of batches that expire; an expiring batch leaves ``expired_share``
    #: of its requests unprocessed.
    expire_rate: float = 0.0
    expired_share: float = 0.5
    #: Seconds from creation until a batch ends (slow completion).
    completion_s: float = 0.2
    seed: int = 7


@dataclass
class Outcome:
    """What one request of a batch became once the batch ended."""

    custom_id: str
    kind: str  # "succeeded" | "errored" | "expired"
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class StandInBatch:
    """One batch of either protocol and its lifecycle."""

    id: str
    protocol: str  # "openai" | "anthropic"
    created: float
    requests: list[dict[str, Any]]
    number: int
    metadata: dict[str, str] = field(default_factory=dict)
    endpoint: str = "/v1/chat/completions"
    input_file_id: str = ""
    outcomes: list[Outcome] | None = None
    failed_reason: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None
    ended: float | None = None
    expired: bool = False


def _draw(seed: int, *parts: object) -> float:
    """A deterministic uniform draw in [0, 1) of the seed and ``parts``."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class BatchStore:
    """Files, batches and submission counts of the stand-in (see the module docstring)."""

    def __init__(
        self, config: StandInConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or StandInConfig()
        self.host = host
        self.port = port
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (purpose, content)
        self.batches: dict[str, StandInBatch] = {}
        #: custom_id -> times submitted in a created batch (what would be billed).
        self.submissions: Counter[str] = Counter()
        #: Called with ("created" | "ended", batch) as it happens, before the
        #: reply goes out (tests kill the client there: mid-submit, mid-poll).
        self.on_event: Callable[[str, StandInBatch], None] | None = None

    @property
    def base_url(self) -> str:
        """The root URL; the OpenAI SDK wants ``<root>/v1``, the Anthropic SDK the root."""
        return f"http://{self.host}:{self.port}"

    # --------------------------------------------------------------- batches

    def new_id(self, prefix: str) -> str:
        """A fresh object id in the provider's style (``batch_``, ``file-``, ``msgbatch_``)."""
        return f"{prefix}{uuid.uuid4().hex[:24]}"

    def create(self, protocol: str, requests: list[dict[str, Any]], **extra: Any) -> StandInBatch:
        """Accept a batch: every custom_id in it counts as submitted (billed) once."""
        batch = StandInBatch(
            id=self.new_id("batch_" if protocol == "openai" else "msgbatch_"),
            protocol=protocol,
            created=time.time(),
            requests=requests,
            number=len(self.batches),
            **extra,
        )
        ids = [str(r.get("custom_id", "")) for r in requests]
        if len(set(ids)) != len(ids) or not all(ids):
            batch.failed_reason = "custom_id values must be non-empty and unique within a batch"
            batch.ended = batch.created
        else:
            self.submissions.update(ids)
        self.batches[batch.id] = batch
        if self.on_event is not None:
            self.on_event("created", batch)
        return batch

    def settle(self, batch: StandInBatch) -> None:
        """End the batch once ``completion_s`` has passed (computing every outcome)."""
        if batch.outcomes is not None or batch.failed_reason:
            return
        if time.time() - batch.created < self.config.completion_s:
            return
        c = self.config
        batch.expired = _draw(c.seed, "expire", batch.number) < c.expire_rate
        outcomes = []
        for request in batch.requests:
            custom_id = str(request["custom_id"])
            params = request.get("body") or request.get("params") or {}
            system, user = self._prompt(params)
            if batch.expired and _draw(c.seed, "unprocessed", custom_id) < c.expired_share:
                outcomes.append(Outcome(custom_id, "expired"))
            elif ALWAYS_FAIL in user or _draw(c.seed, "error", custom_id) < c.error_rate:
                outcomes.append(Outcome(custom_id, "errored"))
            else:
                text = REFUSAL if ALWAYS_GARBAGE in user else answer_for(system, user)
                outcomes.append(
                    Outcome(custom_id, "succeeded", text, (len(system) + len(user)) // 4, len(text))
                )
        batch.outcomes = outcomes
        batch.ended = time.time()
        if self.on_event is not None:
            self.on_event("ended", batch)

    @staticmethod
    def _prompt(params: dict[str, Any]) -> tuple[str, str]:
        """The system and first user text of a chat-completions body or Messages params."""
        messages = params.get("messages") or []
        system = _text(params.get("system")) + "".join(
            _text(m.get("content")) for m in messages if m.get("role") == "system"
        )
        user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
        return system, user

    def status(self, batch: StandInBatch) -> str:
        """The OpenAI status of a batch now."""
        self.settle(batch)
        if batch.failed_reason:
            return "failed"
        if batch.outcomes is None:
            early = time.time() - batch.created < self.config.completion_s / 4
            return "validating" if early else "in_progress"
        return "expired" if batch.expired else "completed"

    def counts(self, batch: StandInBatch) -> Counter[str]:
        """Outcomes by kind (empty before the batch ends)."""
        return Counter(o.kind for o in batch.outcomes or ())

    @staticmethod
    def jsonl(lines: list[dict[str, Any]]) -> bytes:
        """JSON Lines bytes."""
        return b"".join(json.dumps(line).encode() + b"\n" for line in lines)
