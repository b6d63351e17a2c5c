"""Confident-learning filtering: drop the machine labels a cross-fitted model finds wrong.

Confident learning (Northcutt, Jiang and Chuang, "Confident learning:
estimating uncertainty in dataset labels", JAIR 70, 2021) estimates the joint
distribution of given and true labels from out-of-sample predicted
probabilities, then prunes the items most likely mislabelled ("prune by noise
rate"); the model is retrained on what is left. The estimation and pruning are
cleanlab's (``cleanlab.filter.find_label_issues``, the reference
implementation by the paper's authors); this module only says which rows are
trusted: a human label is never pruned, since the reviewer is the ground truth
the whole pipeline trusts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def confident_keep(
    labels: npt.ArrayLike, pred_probs: npt.ArrayLike, trusted: npt.ArrayLike | None = None
) -> npt.NDArray[np.bool_]:
    """Rows to keep: not flagged as a label issue by confident learning, or trusted.

    ``labels`` are the given labels (machine, or human where reviewed),
    ``pred_probs`` out-of-sample class probabilities (shape ``(N, K)``, e.g.
    from cross-fitting), ``trusted`` marks rows never dropped (reviewed items).
    """
    from cleanlab.filter import find_label_issues

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError("pred_probs must have one row per label")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError("labels must be class indices of pred_probs")
    # cleanlab needs every class among the labels and rows that sum to 1.
    p = np.clip(p, 1e-12, None)
    p = p / p.sum(axis=1, keepdims=True)
    # n_jobs=1: cleanlab's own process pool relies on fork-inherited globals and
    # fails inside spawned or daemonic workers (the experiments' training pool).
    issues = np.asarray(
        find_label_issues(y, p, filter_by="prune_by_noise_rate", n_jobs=1), dtype=bool
    )
    keep = ~issues
    if trusted is not None:
        keep |= np.asarray(trusted, dtype=bool)
    return keep


def agreement_keep(
    machine: npt.ArrayLike, pred_probs: npt.ArrayLike, trusted: npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    """Rows to keep: trusted ones, and those whose machine label is the model's prediction.

    ``pred_probs`` come from a model of the trusted (human) labels that did not
    train on the rows it scores. Beyond the paper. A model of human labels
    does not learn the annotator's systematic confusions, so its agreement
    with a machine label is evidence the critic (whose mistakes the annotator
    shares) cannot give; keeping only agreeing rows is co-training's
    agreement filter (Blum and Mitchell, COLT 1998) applied to label noise, a
    "small-loss"/agreement selection as in Co-teaching (Han et al., NeurIPS
    2018). What is dropped is not relabelled: the loss simply never sees it.
    """
    m = np.asarray(machine, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    t = np.asarray(trusted, dtype=bool)
    if p.ndim != 2 or p.shape[0] != m.size or t.shape != m.shape:
        raise ValueError("machine, pred_probs and trusted must describe the same rows")
    keep: npt.NDArray[np.bool_] = t | (p.argmax(axis=1) == m)
    return keep


#: The thresholds of :func:`progressive_correction`'s rounds, strictest first.
PLC_THRESHOLDS = (0.5, 0.3)


def progressive_correction(
    labels: npt.ArrayLike,
    pred_probs: npt.ArrayLike,
    trusted: npt.ArrayLike,
    threshold: float,
) -> npt.NDArray[np.int64]:
    """One round of progressive label correction: relabel the confidently contradicted rows.

    Zhang, Zheng, Wu, Goswami and Chen, "Learning with feature-dependent label
    noise: a progressive approach" (ICLR 2021, PLC, Algorithm 1): a row's label
    y becomes the model's top class j where ``p_j - p_y > threshold``;
    repeated with a falling threshold, each round with a model trained on the
    labels the round before left. PLC's guarantee is for noise that depends on
    the input, as an annotator's confusions of look-alike classes do. Beyond
    the paper. Here ``pred_probs`` must be out of sample (cross-fitted) and
    ``trusted`` rows (human labels) are never changed. Unlike the filters
    above nothing is dropped: a corrected row keeps teaching the model.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    t = np.asarray(trusted, dtype=bool)
    if p.ndim != 2 or p.shape[0] != y.size or t.shape != y.shape:
        raise ValueError("labels, pred_probs and trusted must describe the same rows")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError("labels must be class indices of pred_probs")
    if not 0.0 <= threshold < 1.0:
        raise ValueError("threshold must be in [0, 1)")
    rows = np.arange(y.size)
    top = p.argmax(axis=1)
    flip = ~t & (p[rows, top] - p[rows, y] > threshold)
    out: npt.NDArray[np.int64] = np.where(flip, top, y)
    return out
