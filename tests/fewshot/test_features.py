"""Feature extractors, the embedding cache and labelled pools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.fewshot.features import (
    EmbeddingCache,
    HashedNgrams,
    HogFeatures,
    MiniLMEmbedder,
    PixelFeatures,
)
from services.fewshot.pools import PoolFileError, text_pool_from_jsonl


def test_image_features():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    pixels = PixelFeatures().transform(images)
    assert pixels.shape == (3, 784) and pixels.max() <= 1.0
    hog = HogFeatures().transform(images)
    assert hog.shape == (3, 7 * 7 * 9)
    assert np.allclose(np.linalg.norm(hog, axis=1), 1.0)
    assert np.allclose(HogFeatures().transform(np.zeros((1, 28, 28), dtype=np.uint8)), 0.0)


def test_hashed_ngrams_are_deterministic_and_normalised():
    f = HashedNgrams(dim=256)
    a = f.transform(["Buy cheap watches now", "", "meeting at noon"])
    assert a.shape == (3, 256)
    assert np.allclose(np.linalg.norm(a[[0, 2]], axis=1), 1.0) and not a[1].any()
    assert np.array_equal(
        a, HashedNgrams(dim=256).transform(["Buy cheap watches now", "", "meeting at noon"])
    )


def test_embedding_cache_round_trip(tmp_path: Path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    key = EmbeddingCache.key("m", "hello")
    assert cache.get_many([key]) == {}
    cache.put_many({key: np.arange(4, dtype=np.float32)})
    cache.close()
    again = EmbeddingCache(tmp_path / "e.sqlite").get_many([key, "missing"])
    assert list(again) == [key] and again[key].tolist() == [0, 1, 2, 3]
    assert EmbeddingCache.key("m", "hello") != EmbeddingCache.key("m2", "hello")


def test_minilm_embedder_encodes_each_text_once(tmp_path: Path, monkeypatch):
    embedder = MiniLMEmbedder(cache=EmbeddingCache(tmp_path / "e.sqlite"))
    calls: list[list[str]] = []

    def fake_encode(texts):
        calls.append(list(texts))
        return np.stack([np.full(384, len(t), dtype=np.float32) for t in texts])

    monkeypatch.setattr(embedder, "_encode", fake_encode)
    first = embedder.transform(["a", "bb", "a"])
    assert calls == [["a", "bb"]]  # duplicates encoded once
    second = embedder.transform(["bb", "ccc"])
    assert calls[-1] == ["ccc"]
    assert first[0, 0] == 1 and first[1, 0] == 2 and second[0, 0] == 2
    assert embedder.transform([]).shape == (0, 384)


@pytest.mark.slow
def test_minilm_embeddings_are_meaningful(tmp_path: Path):
    embedder = MiniLMEmbedder(cache=EmbeddingCache(tmp_path / "e.sqlite"))
    vectors = embedder.transform(
        ["Win a free cruise, click now!", "Claim your free prize today", "Minutes of the meeting"]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_text_pool_from_jsonl(tmp_path: Path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"text": "a", "label": "spam", "id": "x"},
                {"text": "b", "label": "ham"},
                {"text": "c", "label": "SPAM"},
            ]
        )
        + "\n\n"
    )
    pool = text_pool_from_jsonl(path)
    assert pool.label_names == ("ham", "spam")
    assert pool.labels.tolist() == [1, 0, 1] and pool.ids == ("x", "line-2", "line-3")
    fixed = text_pool_from_jsonl(path, ["spam", "ham"])
    assert fixed.labels.tolist() == [0, 1, 0]
    items = pool.items([0, 2], task_id="t")
    assert [i.text for i in items] == ["a", "c"] and not items[0].HasField("reference_label")
    path.write_text(json.dumps({"text": "a"}) + "\n")
    with pytest.raises(PoolFileError, match="no 'label'"):
        text_pool_from_jsonl(path)
    path.write_text(json.dumps({"text": "a", "label": "eggs"}) + "\n")
    with pytest.raises(PoolFileError, match="not in"):
        text_pool_from_jsonl(path, ["ham", "spam"])
