"""Loaders of the offline data sets (installed by deploy/datasets.sh)."""

from __future__ import annotations

import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from services.datasets import (
    FASHION_LABELS,
    SPAM_LABELS,
    DatasetFormatError,
    DatasetMissingError,
    decode_gray,
    iter_fashion_mnist,
    load_fashion_mnist,
    load_spam_assassin,
    message_text,
)
from services.datasets.fashion import fashion_mnist_dir, read_idx
from services.datasets.spam import spam_assassin_dir


def test_spam_assassin_counts_labels_and_ids():
    records = load_spam_assassin()
    assert len(records) == 6046
    assert Counter(r.label for r in records) == {0: 4150, 1: 1896}
    assert Counter(r.group for r in records) == {
        "easy-ham-1": 2500,
        "easy-ham-2": 1400,
        "hard-ham-1": 250,
        "spam-1": 500,
        "spam-2": 1396,
    }
    assert len({r.id for r in records}) == 6046
    assert SPAM_LABELS == ("ham", "spam")
    first = records[0]
    assert first.id == "spam-assassin/easy-ham-1/00001.7c53336b37003a9286aba55d2945844c"
    assert first.text.startswith("Subject: Re: New Sequences Window")
    # Headers (relay chains, X-Spam-*) stay out of the text models read.
    assert all("Received:" not in r.text[:2000] for r in records[:200])
    assert all(len(r.text) <= 4000 for r in records)
    assert load_spam_assassin() is records  # cached per process


def test_message_text_prefers_plain_text_and_reduces_html():
    raw = (
        "From: a@example.org\nSubject: Hello\nMIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="b"\n\n'
        "--b\nContent-Type: text/html\n\n<p>Ignored <b>html</b></p>\n"
        "--b\nContent-Type: text/plain\n\nPlain   body\n\n\n\nsecond line\n--b--\n"
    )
    assert message_text(raw) == "Subject: Hello\n\nPlain body\n\nsecond line"
    html_only = (
        "Subject: Offer\nContent-Type: text/html\n\n"
        "<html><style>x{}</style><p>Buy &amp; save</p></html>"
    )
    assert message_text(html_only) == "Subject: Offer\n\nBuy & save"
    assert message_text("no headers at all, just words") == "no headers at all, just words"
    assert len(message_text("Subject: x\n\n" + "y" * 10_000, max_chars=100)) == 100


def test_fashion_mnist_counts_and_label_ranges():
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 28, 28)
    assert train.labels.min() == 0 and train.labels.max() == 9
    assert np.bincount(train.labels).tolist() == [6000] * 10  # balanced classes
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert len(FASHION_LABELS) == 10 and FASHION_LABELS[9] == "Ankle boot"
    assert not train.images.flags.writeable  # the cached arrays are shared
    assert train.item_id(42) == "fashion-mnist/train/00042"


def test_fashion_records_are_png_round_trips():
    records = list(iter_fashion_mnist("test", limit=5))
    arrays = load_fashion_mnist("test")
    assert [r.id for r in records] == [f"fashion-mnist/test/{i:05d}" for i in range(5)]
    for r in records:
        assert r.png.startswith(b"\x89PNG\r\n\x1a\n")
        assert np.array_equal(decode_gray(r.png), arrays.images[r.index])
        assert r.label == int(arrays.labels[r.index])


def test_missing_data_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(DatasetMissingError) as info:
        load_spam_assassin(tmp_path / "nowhere", max_chars=123)
    message = str(info.value)
    assert "spam-assassin" in message and "deploy/datasets.sh" in message
    assert "make datasets" in message and str(tmp_path / "nowhere") in message
    # An explicit location is authoritative: no silent fallback to another copy.
    monkeypatch.setenv("ACT_SPAM_ASSASSIN_DIR", str(tmp_path))
    with pytest.raises(DatasetMissingError, match="ACT_SPAM_ASSASSIN_DIR"):
        spam_assassin_dir()

    import services.datasets.fashion as fashion

    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.delenv("ACT_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(DatasetMissingError, match="dataset-fashion-mnist"):
        fashion_mnist_dir()


def test_fashion_env_override_and_corrupt_idx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real = fashion_mnist_dir()
    for f in real.iterdir():
        (tmp_path / f.name).symlink_to(f)
    monkeypatch.setenv("ACT_FASHION_MNIST_DIR", str(tmp_path))
    assert fashion_mnist_dir() == tmp_path
    bad = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + b"\x00\x01")  # says 5, has 2
    with pytest.raises(DatasetFormatError, match="header says 5"):
        read_idx(bad)
    bad.write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(DatasetFormatError, match="bad magic"):
        read_idx(bad)
