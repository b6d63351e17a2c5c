"""Small real items for the model tests: short e-mails and tiny Fashion-MNIST-like images.

Each source returns ``(label names, items)``. The acceptance test takes its
items from :data:`SOURCES`: real SpamAssassin e-mails and Fashion-MNIST
images from ``services.datasets`` (``make datasets``). The hand-written
samples serve the faster unit tests.
"""

from __future__ import annotations

from collections.abc import Callable

from act.v1 import item_pb2

from tests.llm.pngs import shape_png

SPAM_LABELS = ["ham", "spam"]
SPAM_TEXTS = [
    ("Hi Tom, the budget review moved to Thursday 3pm. Can you bring the Q3 numbers? Ann", 0),
    (
        "CONGRATULATIONS!!! You have been selected to receive a $1000 gift card. Click now "
        "to claim your prize before midnight!",
        1,
    ),
    ("Reminder: your dentist appointment is on Monday at 9:30. Reply C to confirm.", 0),
    (
        "Cheap meds online, no prescription needed. Best prices, discreet shipping, order "
        "today and save 80%!",
        1,
    ),
    ("Thanks for the patch, I merged it into the release branch. Let's tag 2.4.1 tomorrow.", 0),
    (
        "Dear friend, I am a banker with an unclaimed fund of $15.5M. I need your account to "
        "transfer it; you keep 30%.",
        1,
    ),
]

FASHION_LABELS = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
#: (shape drawn, Fashion-MNIST class it resembles)
FASHION_IMAGES = [("bar", 1), ("block", 8), ("ring", 8), ("bar", 3)]


def spam_items(task_id: str, n: int, offset: int = 0) -> tuple[list[str], list[item_pb2.Item]]:
    """``n`` e-mails (cycling) for a text task, with reference labels."""
    items = []
    for k in range(n):
        text, label = SPAM_TEXTS[(offset + k) % len(SPAM_TEXTS)]
        items.append(
            item_pb2.Item(
                item_id=f"{task_id}-mail-{k}",
                task_id=task_id,
                text=text,
                reference_label=label,
                source="samples/spam",
            )
        )
    return SPAM_LABELS, items


def fashion_items(task_id: str, n: int, offset: int = 0) -> tuple[list[str], list[item_pb2.Item]]:
    """``n`` 28x28 greyscale PNGs (cycling) for an image task, with reference labels."""
    items = []
    for k in range(n):
        shape, label = FASHION_IMAGES[(offset + k) % len(FASHION_IMAGES)]
        items.append(
            item_pb2.Item(
                item_id=f"{task_id}-img-{k}",
                task_id=task_id,
                image_bytes=shape_png(shape),
                image_mime_type="image/png",
                reference_label=label,
                source="samples/fashion",
            )
        )
    return FASHION_LABELS, items


def spam_assassin_items(
    task_id: str, n: int, offset: int = 0
) -> tuple[list[str], list[item_pb2.Item]]:
    """``n`` real SpamAssassin e-mails (alternating ham and spam), with reference labels."""
    from services.datasets.spam import SPAM_LABELS as LABELS
    from services.datasets.spam import load_spam_assassin

    # Short texts keep SmolLM2 on two CPU cores fast; the data is real.
    records = load_spam_assassin(max_chars=400)
    by_label = [[r for r in records if r.label == k] for k in range(len(LABELS))]
    items = []
    for k in range(n):
        pool = by_label[(offset + k) % len(by_label)]
        record = pool[((offset + k) // len(by_label) * 97) % len(pool)]
        items.append(
            item_pb2.Item(
                item_id=f"{task_id}-{record.id}",
                task_id=task_id,
                text=record.text,
                reference_label=record.label,
                source="spam-assassin",
            )
        )
    return list(LABELS), items


def fashion_mnist_items(
    task_id: str, n: int, offset: int = 0
) -> tuple[list[str], list[item_pb2.Item]]:
    """``n`` real Fashion-MNIST test images (PNG), with reference labels."""
    from services.datasets.fashion import FASHION_LABELS as LABELS
    from services.datasets.fashion import iter_fashion_mnist

    records = list(iter_fashion_mnist("test", limit=offset + n))[offset:]
    items = [
        item_pb2.Item(
            item_id=f"{task_id}-{r.id}",
            task_id=task_id,
            image_bytes=r.png,
            image_mime_type="image/png",
            reference_label=r.label,
            source="fashion-mnist",
        )
        for r in records
    ]
    return list(LABELS), items


Source = Callable[[str, int, int], tuple[list[str], list[item_pb2.Item]]]
#: The acceptance test's items: real records of both built-in data sets.
SOURCES: dict[str, Source] = {"text": spam_assassin_items, "image": fashion_mnist_items}
