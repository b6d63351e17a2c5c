"""Small real items for the model tests: short e-mails and tiny Fashion-MNIST-like images.

Each source returns ``(label names, items)``. The acceptance test takes its
items from :data:`SOURCES`; to run it on the built-in SpamAssassin and
Fashion-MNIST data sets instead, point the two entries at loaders of
``services.datasets`` that return the same shape.
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


Source = Callable[[str, int, int], tuple[list[str], list[item_pb2.Item]]]
SOURCES: dict[str, Source] = {"text": spam_items, "image": fashion_items}
