"""What a fit chooses before its final training: the label cleaning and lambda.

Both are chosen with human labels only (appendix A.3, :mod:`services.trainer.hpo`):
the reviewed items of a held-out slice (``validation_fraction`` of the items by
a hash of the item id), weighted by ``1/pi``. Every score is handed to the
caller as soon as it exists (a fit metric), and scores already known from
before an interruption are not trained again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
from act.v1 import training_pb2

from services.core.cleaning import agreement_keep
from services.trainer.data import take
from services.trainer.fit import TrainConfig, accuracy, new_state, predict_proba, train
from services.trainer.fitting import PreparedData
from services.trainer.hpo import Candidate, grid_search
from services.trainer.loss import LossKind, Objective

AGREEMENT = training_pb2.LABEL_CLEANING_AGREEMENT
AUTO = training_pb2.LABEL_CLEANING_AUTO
NONE = training_pb2.LABEL_CLEANING_UNSPECIFIED

#: Names of the cleaning variants in the search metrics.
_VARIANT = {False: "none", True: "agreement"}


def lambda_metric(power_lambda: float) -> str:
    """The fit metric holding the validation accuracy of one lambda of the grid."""
    return f"search/lambda={power_lambda:g}/val_accuracy"


def cleaning_metric(cleaned: bool, power_lambda: float) -> str:
    """The fit metric holding the validation accuracy of one (cleaning, lambda) point."""
    return f"search/cleaning={_VARIANT[cleaned]}/lambda={power_lambda:g}/val_accuracy"


@dataclass(frozen=True, slots=True)
class LambdaChoice:
    """The selected lambda; ``skipped`` when a grid was asked for but nothing can score it.

    ``val_accuracy`` is the chosen point's validation accuracy (NaN when
    nothing was scored).
    """

    power_lambda: float
    skipped: bool = False
    val_accuracy: float = math.nan


@dataclass(frozen=True)
class Search:
    """How one fit scores candidates on validation: its config, loss, training
    settings and model, the cancel poll, the scores known from before an
    interruption and where each new score goes as soon as it exists."""

    config: training_pb2.FitConfig
    kind: LossKind
    base: TrainConfig
    make_model: Callable[[], torch.nn.Module]
    cancelled: Callable[[], bool]
    known: Mapping[str, float]
    on_score: Callable[[str, float], None]

    def select_lambda(
        self,
        data: PreparedData,
        *,
        metric: Callable[[float], str] = lambda_metric,
        always_score: bool = False,
    ) -> LambdaChoice:
        """Pick lambda from ``config.power_lambda_grid`` by human-labelled validation accuracy.

        Only the ACT losses have a lambda to search; without a grid the config's
        ``power_lambda`` (default 1) is used, and scored only with
        ``always_score`` (to compare it with another variant of the data).
        Scores already known (keyed by ``metric``) are not trained again. Ties
        go to the earlier grid value; NaN scores (diverged) never win.
        """
        config = self.config
        default = config.power_lambda if config.HasField("power_lambda") else 1.0
        has_lambda = self.kind in (LossKind.ACT, LossKind.ACT_NONNEG)
        grid_values = list(config.power_lambda_grid) if has_lambda else []
        if not grid_values:
            if not always_score:
                return LambdaChoice(default)
            grid_values = [default]
        if len(data.validation) == 0:
            return LambdaChoice(default, skipped=True)
        scores: dict[float, float] = {}
        for lam in grid_values:
            key = metric(lam)
            if key in self.known:
                scores[lam] = self.known[key]
                continue
            result = grid_search(
                self.make_model,
                data.train,
                self.kind,
                data.validation,
                self.base,
                [Candidate(self.base.learning_rate, lam)],
                cancel=self.cancelled,
            )
            scores[lam] = result.best_val_accuracy
            self.on_score(key, result.best_val_accuracy)
        valid = {k: v for k, v in scores.items() if not math.isnan(v)}
        if not valid:
            return LambdaChoice(default)
        best = max(valid, key=lambda k: (valid[k], -grid_values.index(k)))
        return LambdaChoice(best, val_accuracy=valid[best])


def agreement_clean(
    data: PreparedData,
    base: TrainConfig,
    make_model: Callable[[], torch.nn.Module],
    cancelled: Callable[[], bool] | None = None,
) -> tuple[PreparedData, dict[str, float]]:
    """``data`` without the unreviewed rows the agreement filter drops, and what it did.

    A model trained on the reviewed training items' human labels scores the
    unreviewed ones; those whose machine label it does not predict are
    dropped (:func:`services.core.cleaning.agreement_keep`). Seeded like the
    fit, so on a CPU a resumed fit drops the same rows (GPU kernels are not
    bitwise deterministic: nearly the same). Nothing is dropped when no item
    is reviewed or none is unreviewed.
    """
    train_set = data.train
    unreviewed = torch.nonzero(~train_set.delta).flatten()
    if train_set.reviewed == 0 or unreviewed.numel() == 0:
        return data, {"cleaning_dropped": 0.0, "cleaning_skipped": 1.0}
    torch.manual_seed(base.seed)
    plain = replace(base, validate_every_epoch=False)
    judge = train(
        train_set.reviewed_only(),
        Objective(LossKind.HUMAN_ONLY),
        plain,
        new_state(make_model(), plain),
        cancel=cancelled,
    ).model
    proba = np.zeros((len(train_set), train_set.num_classes))
    proba[unreviewed.numpy()] = predict_proba(
        judge, take(train_set.inputs, unreviewed), device=base.device
    ).numpy()
    keep = agreement_keep(train_set.human_filled.numpy(), proba, train_set.delta.numpy())
    metrics = {
        "cleaning_dropped": float((~keep).sum()),
        "cleaning_kept_unreviewed": float(unreviewed.numel() - (~keep).sum()),
    }
    if len(data.validation):
        metrics["cleaning_judge_val_accuracy"] = accuracy(
            judge, data.validation, device=base.device
        )
    cleaned = train_set.subset(torch.as_tensor(np.flatnonzero(keep)))
    return replace(data, train=cleaned), metrics


@dataclass(frozen=True, slots=True)
class FitChoice:
    """What a fit trains on and with: the (maybe cleaned) data, lambda, and metrics to record."""

    data: PreparedData
    power_lambda: float
    metrics: dict[str, float]
    lambda_skipped: bool = False


def choose(search: Search, data: PreparedData) -> FitChoice:
    """The config's cleaning and lambda, chosen on validation where the config asks.

    ``LABEL_CLEANING_AUTO`` selects the (cleaning, lambda) pair with the best
    validation accuracy: lambda is selected on each variant of the data as
    :meth:`Search.select_lambda` does, and the filtered data wins only with a
    strictly better score (a tie keeps every label). Without validation items
    nothing can tell, so nothing is dropped (``cleaning_applied`` 0,
    ``cleaning_skipped`` 1).
    """
    cleaning = search.config.cleaning
    if cleaning not in (NONE, AGREEMENT, AUTO):
        raise ValueError(f"unknown label cleaning {cleaning}")
    variant = data
    metrics: dict[str, float] = {}
    if cleaning != NONE:
        cleaned, metrics = agreement_clean(data, search.base, search.make_model, search.cancelled)
        if cleaning == AGREEMENT:
            variant = cleaned
        elif len(data.validation) == 0 or metrics.get("cleaning_skipped"):
            metrics = {**metrics, "cleaning_applied": 0.0, "cleaning_skipped": 1.0}
        else:
            return _auto(search, data, cleaned, metrics)
    lam = search.select_lambda(variant)
    return FitChoice(variant, lam.power_lambda, metrics, lam.skipped)


def _auto(
    search: Search, data: PreparedData, cleaned: PreparedData, metrics: dict[str, float]
) -> FitChoice:
    """The better of the plain and the filtered data on validation (a tie: plain)."""
    choices = {
        applied: search.select_lambda(
            variant, metric=partial(cleaning_metric, applied), always_score=True
        )
        for applied, variant in ((False, data), (True, cleaned))
    }
    applied = better(choices[True].val_accuracy, choices[False].val_accuracy)
    metrics = {**metrics, "cleaning_applied": float(applied)}
    return FitChoice(cleaned if applied else data, choices[applied].power_lambda, metrics)


def better(score: float, than: float) -> bool:
    """Whether ``score`` strictly beats ``than`` (NaN never wins; anything beats NaN)."""
    if math.isnan(score):
        return False
    return math.isnan(than) or score > than
