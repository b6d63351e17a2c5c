"""A few-shot model: fixed features + a small classifier fit on the seed + a temperature.

``FewShotModel`` is the unit that the annotator and critic backends, the
benchmarks and ``act select-models`` share. Specs name the combinations we
ship (:data:`FEWSHOT_SPECS`), e.g. ``logreg-pixels`` (logistic regression on raw
pixels) or ``knn-minilm`` (nearest neighbours on sentence embeddings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np

from services.fewshot.classifiers import (
    Classifier,
    FloatMatrix,
    IntVector,
    KNearest,
    NearestCentroid,
    SoftmaxRegression,
    cross_fitted_logits,
    fit_temperature,
    single_threaded_blas,
    softmax,
)
from services.fewshot.features import (
    HashedNgrams,
    HogFeatures,
    ImageStack,
    MiniLMEmbedder,
    PixelFeatures,
)

Modality = Literal["text", "image"]
InputsT = TypeVar("InputsT")
InputsT_contra = TypeVar("InputsT_contra", contravariant=True)


class Features(Protocol[InputsT_contra]):
    """A fixed (label-free) map from raw inputs to a feature matrix."""

    @property
    def name(self) -> str:
        """Short identifier, e.g. ``pixels``."""
        ...

    def transform(self, inputs: InputsT_contra) -> FloatMatrix:
        """One row per input."""
        ...


class FewShotModel(Generic[InputsT]):
    """Features, a classifier fit on the seed, and a calibration temperature.

    ``fit`` sees the seed's inputs and labels and nothing else. The temperature
    is fit on held-out predictions of the seed itself: exact leave-one-out for
    neighbour and centroid classifiers, 5-fold cross-fitting otherwise.
    """

    def __init__(
        self,
        features: Features[InputsT],
        make_classifier: Callable[[], Classifier],
        *,
        modality: Modality,
        calibrate: bool = True,
        folds: int = 5,
    ) -> None:
        self.features = features
        self.make_classifier = make_classifier
        self.modality: Modality = modality
        self.calibrate = calibrate
        self.folds = folds
        self.classifier: Classifier = make_classifier()
        self.temperature = 1.0
        self.n_classes = 0
        self.seed_size = 0

    @property
    def name(self) -> str:
        """``<classifier>-<features>``, e.g. ``logreg-pixels``."""
        return f"{self.classifier.name}-{self.features.name}"

    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` or :meth:`fit_features` ran."""
        return self.n_classes > 0

    def fit(self, inputs: InputsT, labels: IntVector, n_classes: int) -> FewShotModel[InputsT]:
        """Fit on the seed (its raw inputs and human labels)."""
        return self.fit_features(self.features.transform(inputs), labels, n_classes)

    def fit_features(
        self, x: FloatMatrix, labels: IntVector, n_classes: int
    ) -> FewShotModel[InputsT]:
        """Fit on the seed's precomputed features (benchmarks share one transform)."""
        y = np.asarray(labels, dtype=np.int64)
        with single_threaded_blas():
            self.classifier = self.make_classifier()
            self.classifier.fit(x, y, n_classes)
            self.n_classes, self.seed_size = n_classes, len(y)
            self.temperature = 1.0
            if self.calibrate and len(y) >= 2 * n_classes:
                held_out = self.classifier.loo_logits()
                if held_out is None:
                    folds = min(self.folds, len(y) // n_classes)
                    held_out = cross_fitted_logits(self.make_classifier, x, y, n_classes, folds)
                self.temperature = fit_temperature(held_out, y)
        return self

    def proba_from_features(self, x: FloatMatrix) -> FloatMatrix:
        """P(class | input) for precomputed features, rows summing to 1."""
        if not self.fitted:
            raise RuntimeError("fit the few-shot model on its seed first")
        with single_threaded_blas():
            return softmax(self.classifier.logits(x) / self.temperature)

    def predict_proba(self, inputs: InputsT) -> FloatMatrix:
        """P(class | input) for raw inputs."""
        return self.proba_from_features(self.features.transform(inputs))


TextModel = FewShotModel[Sequence[str]]
ImageModel = FewShotModel[ImageStack]


@dataclass(frozen=True, slots=True)
class FewShotSpec:
    """A named features + classifier combination that can build fresh models."""

    name: str
    modality: Modality
    description: str
    build: Callable[[], FewShotModel[Any]]


def _spec(
    name: str,
    modality: Modality,
    description: str,
    features: Callable[[], Features[Any]],
    classifier: Callable[[], Classifier],
) -> FewShotSpec:
    return FewShotSpec(
        name=name,
        modality=modality,
        description=description,
        build=lambda: FewShotModel(features(), classifier, modality=modality),
    )


#: Few-shot models by name. The defaults of the pair are marked in the docs of
#: :mod:`services.fewshot.pair`; the rest are candidates for model selection.
FEWSHOT_SPECS: dict[str, FewShotSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "logreg-pixels",
            "image",
            "logistic regression on raw pixels",
            PixelFeatures,
            lambda: SoftmaxRegression(l2=0.1),
        ),
        _spec(
            "logreg-hog",
            "image",
            "logistic regression on gradient histograms (HOG)",
            HogFeatures,
            lambda: SoftmaxRegression(l2=0.01),
        ),
        _spec("knn-hog", "image", "10-nearest neighbours on HOG", HogFeatures, KNearest),
        _spec("knn-pixels", "image", "10-nearest neighbours on pixels", PixelFeatures, KNearest),
        _spec(
            "centroid-pixels",
            "image",
            "nearest class mean on pixels",
            PixelFeatures,
            NearestCentroid,
        ),
        _spec(
            "logreg-minilm",
            "text",
            "logistic regression on all-MiniLM-L6-v2 embeddings",
            MiniLMEmbedder,
            lambda: SoftmaxRegression(l2=0.01),
        ),
        _spec(
            "knn-minilm",
            "text",
            "10-nearest neighbours on MiniLM embeddings",
            MiniLMEmbedder,
            KNearest,
        ),
        _spec(
            "centroid-minilm",
            "text",
            "nearest class mean on MiniLM embeddings",
            MiniLMEmbedder,
            NearestCentroid,
        ),
        _spec(
            "logreg-ngrams",
            "text",
            "logistic regression on hashed word 1-2-grams",
            HashedNgrams,
            lambda: SoftmaxRegression(l2=0.01, scale_floor=1.0),
        ),
        _spec(
            "centroid-ngrams",
            "text",
            "nearest class mean on hashed word 1-2-grams",
            HashedNgrams,
            NearestCentroid,
        ),
    )
}


def build_fewshot_model(name: str) -> FewShotModel[Any]:
    """A fresh (unfitted) model of the named spec."""
    try:
        return FEWSHOT_SPECS[name].build()
    except KeyError:
        known = ", ".join(sorted(FEWSHOT_SPECS))
        raise ValueError(f"unknown few-shot model {name!r}; known: {known}") from None
