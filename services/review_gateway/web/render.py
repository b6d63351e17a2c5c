"""What the reviewer page shows of a lease: a JSON view built from the lease.

Decisions taken here, on the server, so that a page cannot show more than the
task allows:

* the machine label and the critic's eps and rationale are included only when
  the task's review settings say so (showing them anchors reviewers), and the
  list of what was shown goes to the audit log;
* when the machine label is in the task's sensitive set, the view says so
  first (the suspected category, shown before the content), the image starts
  blurred and in grayscale, and words of the text that a profanity model
  scores as offensive are masked until the reviewer reveals them.

The masking model is ``alt-profanity-check`` (a linear SVM over a TF-IDF of
words, trained on labelled offensive text and maintained on PyPI), applied word
by word: a maintained model rather than a hand-written list. It catches
sexual, violent and abusive vocabulary, not every euphemism; the blur of the
whole card, the suspected-category banner and the exposure cap do not depend
on it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from act.v1 import item_pb2, review_pb2

from services.review_gateway.errors import NotFound
from services.review_gateway.labels import label_name, machine_label, request_item
from services.review_gateway.ops import LeaseView
from services.review_gateway.policy import ReviewPolicy

#: Words and the separators between them, so that masking keeps the layout.
_TOKENS = re.compile(r"(\w[\w'\u2019-]*)|(\W+)", re.UNICODE)
MASK_THRESHOLD = 0.5
#: Image types served inline; anything else is never sent to a browser.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@functools.cache
def _scorer() -> Callable[[Sequence[str]], Sequence[float]]:
    from profanity_check import predict_prob  # loads the model once, on first use

    return lambda words: [float(p) for p in predict_prob(list(words))]


def warm_up() -> None:
    """Load the masking model now (at start-up) rather than on the first sensitive item."""
    _scorer()(["warm"])


def mask_segments(text: str, threshold: float = MASK_THRESHOLD) -> list[dict[str, Any]]:
    """``text`` as segments ``{"t": text, "m": masked}``; offensive words masked.

    Runs are merged so that a page renders few spans.
    """
    tokens = [(m.group(0), m.group(1) is not None) for m in _TOKENS.finditer(text)]
    words = sorted({tok.lower() for tok, is_word in tokens if is_word})
    scores = dict(zip(words, _scorer()(words), strict=True)) if words else {}
    segments: list[dict[str, Any]] = []
    for tok, is_word in tokens:
        masked = is_word and scores.get(tok.lower(), 0.0) >= threshold
        if segments and not masked and not segments[-1]["m"]:
            segments[-1]["t"] += tok
        else:
            segments.append({"t": tok, "m": masked})
    return segments


def _label_name(view: LeaseView, index: int | None) -> str:
    if index is None:
        return ""
    return label_name(view.task, index) or str(index)


def _kind(item: item_pb2.Item) -> str:
    has_image = item.WhichOneof("image") is not None
    if has_image and item.question:
        return "vqa"
    return "image" if has_image else "text"


def inline_image(request: review_pb2.ReviewRequest) -> tuple[bytes, str]:
    """The item's inline image and its MIME type; NotFound unless it is one we serve."""
    item = request_item(request)
    mime = item.image_mime_type or "application/octet-stream"
    if item.WhichOneof("image") != "image_bytes" or mime not in IMAGE_TYPES:
        raise NotFound("no inline image for this item")
    return item.image_bytes, mime


def content_view(
    request: review_pb2.ReviewRequest, policy: ReviewPolicy, image_url: str
) -> dict[str, Any]:
    """What a page shows of an item: kind, text (words masked when the suspected
    category is sensitive), question, the route of its image; and whether it is
    sensitive."""
    item = request_item(request)
    category = machine_label(request)
    sensitive = category is not None and policy.is_sensitive(category)
    kind = _kind(item)
    text = item.text
    segments = mask_segments(text) if sensitive and text else [{"t": text, "m": False}]
    return {
        "kind": kind,
        "segments": segments if text else [],
        "question": item.question,
        "image": image_url if kind != "text" else "",
        "sensitive": sensitive,
    }


def lease_json(view: LeaseView, policy: ReviewPolicy, blur_px: int) -> tuple[dict[str, Any], str]:
    """The page's view of a lease, and the audit detail of what it shows."""
    content = content_view(view.request, policy, f"/media/{view.lease_id}")
    sensitive = bool(content.pop("sensitive"))
    category = machine_label(view.request)
    shown = ["content"]
    body: dict[str, Any] = {
        "lease_id": view.lease_id,
        "deadline_ms": view.deadline_us // 1000,
        "task": {
            "id": view.task.task_id,
            "name": view.task.name or view.task.task_id,
            "instructions": view.task.instructions,
            "labels": [
                {"index": lb.index, "name": lb.name, "description": lb.description}
                for lb in view.task.labels
            ],
        },
        "item": content,
        "sensitive": sensitive,
        "category": _label_name(view, category) if sensitive else "",
        "blur_px": blur_px,
        "machine": None,
    }
    if sensitive:
        shown.append("category")
    machine: dict[str, Any] = {}
    if policy.show_machine_label and category is not None:
        machine["label"] = _label_name(view, category)
        shown.append("machine_label")
    if policy.show_critique:
        critique = view.request.decision.critique
        machine["eps"] = round(float(view.request.decision.eps), 3)
        machine["rationale"] = critique.rationale
        shown.append("critique")
    if machine:
        body["machine"] = machine
    return body, "shown=" + ",".join(shown)
