"""Fashion-MNIST (Xiao et al., 2017), one of the paper's six data sets.

Installed from the Debian package ``dataset-fashion-mnist`` (by
``deploy/datasets.sh``), which puts the four IDX files of the original release
under ``/usr/share/datasets/fashion-mnist``. We parse IDX ourselves (a 4-byte
magic with the element type and rank, big-endian dimensions, then raw bytes),
so no framework is needed: 60,000 training and 10,000 test images of 28x28
uint8 pixels, labels 0-9.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.datasets.errors import DatasetFormatError, DatasetMissingError
from services.datasets.png import encode_gray_png

#: Environment variable that overrides where the IDX files are looked up.
ENV_VAR = "ACT_FASHION_MNIST_DIR"
#: Where the Debian package installs the files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Class names in label-index order (the data set's README).
FASHION_LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Images per split in the original release.
SPLIT_SIZES: dict[str, int] = {"train": 60_000, "test": 10_000}
IMAGE_SIDE = 28

Split = Literal["train", "test"]
_FILE_PREFIX: dict[str, str] = {"train": "train", "test": "t10k"}
_IDX_UBYTE = 0x08


@dataclass(frozen=True, slots=True)
class FashionArrays:
    """One split as arrays: ``images`` (N, 28, 28) uint8 and ``labels`` (N,) int64."""

    split: str
    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def item_id(self, index: int) -> str:
        """Stable id of the image at ``index``: ``fashion-mnist/<split>/<index:05d>``."""
        return fashion_item_id(self.split, index)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One labelled image: PNG bytes of the 28x28 grayscale picture."""

    id: str
    png: bytes
    label: int
    split: str
    index: int


def fashion_item_id(split: str, index: int) -> str:
    """The stable item id of image ``index`` of ``split`` (position in the IDX file)."""
    return f"fashion-mnist/{split}/{index:05d}"


def fashion_mnist_dir(root: Path | None = None) -> Path:
    """The folder with the four IDX files, or :class:`DatasetMissingError`.

    An explicit ``root``, else ``$ACT_FASHION_MNIST_DIR``, is the only place
    looked at; otherwise the Debian package's folder.
    """
    env = os.environ.get(ENV_VAR)
    candidates = [Path(root)] if root is not None else [Path(env)] if env else [DEBIAN_DIR]
    for folder in candidates:
        if all(
            (folder / _idx_name(split, kind)).is_file()
            for split in SPLIT_SIZES
            for kind in ("images", "labels")
        ):
            return folder
    raise DatasetMissingError(
        "fashion-mnist", candidates, env_var=ENV_VAR, detail="Debian package dataset-fashion-mnist"
    )


def _idx_name(split: str, kind: str) -> str:
    ndim = 3 if kind == "images" else 1
    return f"{_FILE_PREFIX[split]}-{kind}-idx{ndim}-ubyte.gz"


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """An IDX file (optionally gzip-compressed) of unsigned bytes as an array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DatasetFormatError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetFormatError(f"{path} is not an IDX file (bad magic)")
    dtype, ndim = data[2], data[3]
    if dtype != _IDX_UBYTE:
        raise DatasetFormatError(f"{path}: IDX element type {dtype:#x}, expected unsigned byte")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise DatasetFormatError(
            f"{path}: {len(data) - header} data bytes, header says {count} ({dims})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@lru_cache(maxsize=4)
def _load(folder: Path, split: str) -> FashionArrays:
    images = read_idx(folder / _idx_name(split, "images"))
    labels = read_idx(folder / _idx_name(split, "labels")).astype(np.int64)
    if images.shape != (SPLIT_SIZES[split], IMAGE_SIDE, IMAGE_SIDE) or labels.shape != (
        SPLIT_SIZES[split],
    ):
        raise DatasetFormatError(
            f"fashion-mnist {split}: images {images.shape}, labels {labels.shape}; "
            f"expected {SPLIT_SIZES[split]} images of {IMAGE_SIDE}x{IMAGE_SIDE}"
        )
    if labels.min() < 0 or labels.max() >= len(FASHION_LABELS):
        raise DatasetFormatError(f"fashion-mnist {split}: label out of range 0-9")
    images.flags.writeable = False  # shared by the cache: nobody may modify it
    labels.flags.writeable = False
    return FashionArrays(split=split, images=images, labels=labels)


def load_fashion_mnist(split: Split = "train", root: Path | None = None) -> FashionArrays:
    """Images and labels of one split (cached per process; the arrays are read-only)."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SIZES)}")
    return _load(fashion_mnist_dir(root), split)


def iter_fashion_mnist(
    split: Split = "train", root: Path | None = None, *, limit: int | None = None
) -> Iterator[ImageRecord]:
    """Records of one split in file order, each image encoded as PNG on the fly."""
    arrays = load_fashion_mnist(split, root)
    stop = len(arrays) if limit is None else min(limit, len(arrays))
    for index in range(stop):
        yield ImageRecord(
            id=arrays.item_id(index),
            png=encode_gray_png(np.ascontiguousarray(arrays.images[index])),
            label=int(arrays.labels[index]),
            split=split,
            index=index,
        )
