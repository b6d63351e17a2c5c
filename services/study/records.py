"""What the study records per model call and per phase, and the JSONL they go to.

One line per call (label or eps, tokens, latency) and one per phase (a model
running one strategy over a batch of items: wall time, hence items/s, and
the server's prompt-cache reuse where it can be read). The file is
append-only and keyed, so an interrupted ``make study`` resumes where it
stopped instead of paying for the same calls again.

Prompt-cache hit share. llama-cpp-python 0.3.36's server returns only
``usage.prompt_tokens``, ``completion_tokens`` and ``total_tokens``: no
``prompt_tokens_details.cached_tokens`` and no ``timings`` (those are the C++
llama.cpp server's). The only place the reuse shows is the server's stderr
with ``--verbose true``: ``Llama.generate: N prefix-match hit, remaining M
prompt tokens to eval`` per request that reused N cached tokens.
The study's own servers run with ``ACT_LLM_VERBOSE=true`` for that reason;
a server given with ``--server`` usually runs with ``--verbose false``
(``deploy/llm-server.sh``'s default), and then the share is not measurable
and the report says so. :func:`prefix_hits` reads those lines.

Item content never goes into these records' progress messages; the file
keeps the models' rationales (needed to resume devil's advocate, which
criticises the annotator's reasoning) under ``.local/``, outside git.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

Role = Literal["annotate", "critique"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One annotator or critic call on one item.

    For a critique, ``annotator``/``annotation`` name whose labels (and which
    annotation strategy) were judged. ``label`` is -1 and ``eps`` None when
    the call failed; ``error`` is then the exception's type (never its
    message, which may quote model output about the item).
    """

    role: Role
    model: str
    strategy: str
    item_id: str
    label: int = -1
    eps: float | None = None
    annotator: str = ""
    annotation: str = ""
    rationale: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 1
    error: str = ""
    phase: str = "run"

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        """What identifies the call across runs (for resuming)."""
        return (self.role, self.model, self.strategy, self.annotator, self.annotation, self.item_id)

    @property
    def ok(self) -> bool:
        """The call produced a label or an eps."""
        return not self.error


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """One model running one strategy over a batch of items, timed as a whole.

    ``cache_hit_tokens`` is the sum of the server's prefix-match reuse over
    the phase, or None when the server does not report it.
    """

    role: Role
    model: str
    strategy: str
    n_calls: int
    wall_s: float
    prompt_tokens: int = 0
    cache_hit_tokens: int | None = None
    phase: str = "run"


def _from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class RecordStore:
    """The study's append-only JSONL of calls and phases."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: dict[tuple[str, ...], CallRecord] = {}
        self.phases: list[PhaseRecord] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                data = json.loads(line)
                kind = data.pop("kind", "")
                if kind == "call":
                    record: CallRecord = _from_dict(CallRecord, data)
                    self.calls[record.key] = record
                elif kind == "phase":
                    self.phases.append(_from_dict(PhaseRecord, data))

    def _append(self, kind: str, records: Iterable[CallRecord | PhaseRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            for r in records:
                out.write(json.dumps({"kind": kind, **asdict(r)}, sort_keys=True) + "\n")

    def add_calls(self, records: Iterable[CallRecord]) -> None:
        """Append calls (a later record of the same key wins on reload)."""
        batch = list(records)
        self._append("call", batch)
        for r in batch:
            self.calls[r.key] = r

    def add_phase(self, record: PhaseRecord) -> None:
        """Append one phase's timing."""
        self._append("phase", [record])
        self.phases.append(record)

    def get(self, key: tuple[str, ...]) -> CallRecord | None:
        """A successful earlier call of this key (failed calls are tried again)."""
        record = self.calls.get(key)
        return record if record is not None and record.ok else None

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.calls.values())


_PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")


def prefix_hits(log_text: str) -> int | None:
    """Prompt tokens the server took from its KV cache, from a verbose server log.

    None when the text shows no verbose output at all (a server run with
    ``--verbose false`` prints neither prefix-match lines nor llama.cpp's
    per-request ``prompt eval time``): "not measured", not "no reuse".
    """
    matches = _PREFIX_HIT.findall(log_text)
    if not matches and "prompt eval time" not in log_text:
        return None
    return sum(int(hit) for hit, _ in matches)
