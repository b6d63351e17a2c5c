"""Labelled pools: where a few-shot seed is drawn from.

A pool is a set of items whose human labels *can* be asked for; the seed
selection (:func:`services.fewshot.seed.select_seed`) asks for as few of them
as it needs. Built-in pools are the data sets of :mod:`services.datasets`
(Fashion-MNIST's training split, the SpamAssassin corpus); a user can bring
their own labelled texts as JSONL (``{"text": ..., "label": ...}`` per line).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from act.v1 import item_pb2

from services.datasets import FASHION_LABELS, SPAM_LABELS, load_fashion_mnist, load_spam_assassin
from services.datasets.png import encode_gray_png
from services.fewshot.features import ImageStack
from services.fewshot.model import Modality

IntVector = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class LabelledPool:
    """Items with ids, raw inputs and (hidden) human labels.

    ``labels`` are what a human would answer for each item; code that builds
    few-shot models reads them only through :meth:`label_of` during seed
    selection (see :mod:`services.fewshot.seed`).
    """

    name: str
    modality: Modality
    label_names: tuple[str, ...]
    ids: tuple[str, ...]
    labels: IntVector
    texts: tuple[str, ...] = ()
    images: ImageStack | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def label_of(self, index: int) -> int:
        """The human label of item ``index`` (what a reviewer would say)."""
        return int(self.labels[index])

    def inputs(self, indices: Sequence[int] | IntVector) -> Any:
        """Raw model inputs of these items: a list of texts or an (n, 28, 28) image stack."""
        if self.modality == "text":
            return [self.texts[int(i)] for i in indices]
        if self.images is None:
            raise RuntimeError(f"pool {self.name!r} has no images")
        return self.images[np.asarray(indices, dtype=np.int64)]

    def subset(self, indices: Sequence[int] | IntVector) -> LabelledPool:
        """The pool restricted to these items (in this order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return LabelledPool(
            name=self.name,
            modality=self.modality,
            label_names=self.label_names,
            ids=tuple(self.ids[int(i)] for i in idx),
            labels=self.labels[idx],
            texts=tuple(self.texts[int(i)] for i in idx) if self.texts else (),
            images=self.images[idx] if self.images is not None else None,
        )

    def items(self, indices: Sequence[int] | IntVector, task_id: str = "") -> list[item_pb2.Item]:
        """Pipeline items of these pool entries: text, or the image as PNG bytes.

        The human label is deliberately *not* copied into ``reference_label``:
        these items go to models.
        """
        out = []
        for i in np.asarray(indices, dtype=np.int64):
            item = item_pb2.Item(item_id=self.ids[int(i)], task_id=task_id, source=self.name)
            if self.modality == "text":
                item.text = self.texts[int(i)]
            else:
                assert self.images is not None
                png = encode_gray_png(np.ascontiguousarray(self.images[int(i)]))
                item.image_bytes = png
                item.image_mime_type = "image/png"
                item.image_sha256 = hashlib.sha256(png).hexdigest()
            out.append(item)
        return out


def fashion_pool(split: str = "train") -> LabelledPool:
    """Fashion-MNIST images of one split (the training split seeds the pair)."""
    arrays = load_fashion_mnist("test" if split == "test" else "train")
    return LabelledPool(
        name=f"fashion-mnist/{arrays.split}",
        modality="image",
        label_names=FASHION_LABELS,
        ids=tuple(arrays.item_id(i) for i in range(len(arrays))),
        labels=np.asarray(arrays.labels, dtype=np.int64),
        images=arrays.images,
    )


def spam_pool() -> LabelledPool:
    """All SpamAssassin messages (subject and body text)."""
    records = load_spam_assassin()
    return LabelledPool(
        name="spam-assassin",
        modality="text",
        label_names=SPAM_LABELS,
        ids=tuple(r.id for r in records),
        labels=np.array([r.label for r in records], dtype=np.int64),
        texts=tuple(r.text for r in records),
    )


#: Built-in pools by data set name (also the names of `act ingest --dataset`).
BUILTIN_POOLS = {
    "fashion-mnist": lambda: fashion_pool("train"),
    "fashion-mnist-test": lambda: fashion_pool("test"),
    "spam-assassin": spam_pool,
}


def builtin_pool(name: str) -> LabelledPool:
    """The pool of a built-in data set (raises ValueError for unknown names)."""
    try:
        factory = BUILTIN_POOLS[name]
    except KeyError:
        raise ValueError(
            f"no built-in labelled pool {name!r}; known: {', '.join(sorted(BUILTIN_POOLS))}"
        ) from None
    return factory()


class PoolFileError(ValueError):
    """A labelled JSONL file that cannot be used as a pool."""


def text_pool_from_jsonl(path: Path, label_names: Sequence[str] | None = None) -> LabelledPool:
    """A text pool from JSONL lines ``{"text": str, "label": name-or-index, "id"?: str}``.

    Label names come from ``label_names`` or, when not given, from the file
    (its distinct names sorted case-insensitively, or the indices' range when
    labels are integers).
    """
    rows: list[tuple[str, str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PoolFileError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise PoolFileError(f"{path}:{lineno}: expected an object with a 'text' string")
            if "label" not in record:
                raise PoolFileError(f"{path}:{lineno}: no 'label' (a human label is required)")
            rows.append(
                (str(record.get("id") or f"line-{lineno}"), record["text"], record["label"])
            )
    if not rows:
        raise PoolFileError(f"{path}: no records")
    raw_labels = [label for _, _, label in rows]
    if label_names is None:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in raw_labels):
            label_names = [str(i) for i in range(max(raw_labels) + 1)]
        else:  # distinct names, compared case-insensitively, first spelling kept
            spelling: dict[str, str] = {}
            for value in raw_labels:
                spelling.setdefault(str(value).strip().lower(), str(value).strip())
            label_names = [spelling[key] for key in sorted(spelling)]
    names = [n.strip().lower() for n in label_names]
    labels: list[int] = []
    for (item_id, _, value), lineno in zip(rows, range(1, len(rows) + 1), strict=True):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            labels.append(value)
        elif isinstance(value, str) and value.strip().lower() in names:
            labels.append(names.index(value.strip().lower()))
        else:
            raise PoolFileError(
                f"record {lineno} ({item_id}): label {value!r} not in {list(label_names)}"
            )
    ids = tuple(item_id for item_id, _, _ in rows)
    if len(set(ids)) != len(ids):
        raise PoolFileError(f"{path}: duplicate ids")
    return LabelledPool(
        name=path.name,
        modality="text",
        label_names=tuple(label_names),
        ids=ids,
        labels=np.array(labels, dtype=np.int64),
        texts=tuple(text for _, text, _ in rows),
    )
