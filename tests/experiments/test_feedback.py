"""Baselines' stand-in critics and the feedback loop (the model as a cross-fitted critic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.core.metrics import abs_score
from services.core.sampling import normalization_pi
from services.experiments.feedback import (
    critic_eps,
    cross_fitted_wrong_prob,
    feedback_reviews,
    fold_assignment,
    round_sizes,
    top_unreviewed,
)
from services.experiments.methods import METHODS_BY_KEY, TableConfig
from services.experiments.report import write_report
from services.experiments.table import compute_table, default_rows
from tests.experiments.support import synthetic_annotations, synthetic_data

K = 4


def _shared_and_independent(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Machine labels with 20% errors; a critic that misses half of them (shared
    mistakes: eps low on a hidden "look-alike" half) and a second signal whose
    misses are independent of the critic's."""
    rng = np.random.default_rng(seed)
    human = rng.integers(0, K, n)
    wrong = rng.random(n) < 0.2
    machine = np.where(wrong, (human + 1) % K, human)
    lookalike = rng.random(n) < 0.5  # the critic shares the annotator's mistake here
    eps = np.clip(np.where(wrong & ~lookalike, 0.8, 0.2) + rng.normal(0, 0.1, n), 0.001, 0.999)
    second = np.clip(np.where(wrong, 0.65, 0.3) + rng.normal(0, 0.15, n), 0.001, 0.999)
    return human, machine, eps, second


Calls = list[tuple[set[int], set[int], np.ndarray]]


def _fit_from(second: np.ndarray, machine: np.ndarray, calls: Calls):  # type: ignore[no-untyped-def]
    """A stand-in for training: probabilities whose mass on the machine label is
    1 - second; records what each fit trained on, scored, and the labels it got."""

    def fit(
        train_index: npt.NDArray[np.int64],
        labels: npt.NDArray[np.int64],
        score_index: npt.NDArray[np.int64],
    ) -> np.ndarray:
        calls.append((set(train_index.tolist()), set(score_index.tolist()), labels.copy()))
        p = np.full((score_index.size, K), 0.0)
        on = 1.0 - second[score_index]
        p[:, :] = ((1.0 - on) / (K - 1))[:, None]
        p[np.arange(score_index.size), machine[score_index]] = on
        return p

    return fit


def test_round_sizes_split_the_budget_evenly() -> None:
    assert round_sizes(10, 3) == [4, 3, 3]
    assert round_sizes(0, 2) == [0, 0]
    assert sum(round_sizes(12485, 2)) == 12485
    with pytest.raises(ValueError, match="rounds"):
        round_sizes(5, 0)


def test_top_unreviewed_skips_reviewed_and_breaks_ties_by_order() -> None:
    score = np.array([0.9, 0.5, 0.5, 0.1, 0.9])
    reviewed = np.array([True, False, False, False, False])
    tie = np.array([0, 2, 1, 3, 4])
    assert top_unreviewed(score, reviewed, 2, tie).tolist() == [4, 2]
    assert top_unreviewed(score, reviewed, 10, tie).size == 4


def test_random_critic_reviews_a_uniform_subset_of_size_b() -> None:
    n, b = 200, 30
    counts = np.zeros(n)
    for seed in range(400):
        eps = critic_eps("random", np.zeros(n), np.zeros(n), np.zeros(n), seed)
        chosen = top_unreviewed(eps, np.zeros(n, bool), b, np.arange(n))
        assert chosen.size == b
        counts[chosen] += 1
    # Each item's inclusion frequency is b/n = 0.15 (binomial sd over 400 seeds ~0.018).
    freq = counts / 400
    assert abs(freq.mean() - b / n) < 1e-9
    assert np.all(np.abs(freq - b / n) < 0.09)
    assert np.std(freq) < 0.03


def test_blind_critic_gives_pi_b_over_n_under_normalization() -> None:
    eps = critic_eps("blind", np.random.default_rng(0).random(500), np.zeros(500), np.zeros(500), 0)
    assert np.allclose(normalization_pi(eps, 50), 50 / 500)


def test_oracle_critic_ranks_every_wrong_label_first() -> None:
    human, machine, eps, _ = _shared_and_independent(2000, 1)
    oracle = critic_eps("oracle", eps, machine, human, 3)
    wrong = machine != human
    assert oracle[wrong].min() > oracle[~wrong].max()
    assert np.all((oracle >= 0) & (oracle < 1))
    assert np.array_equal(critic_eps("critic", eps, machine, human, 3), eps)
    with pytest.raises(ValueError, match="unknown"):
        critic_eps("psychic", eps, machine, human, 0)  # type: ignore[arg-type]


def test_cross_fitting_never_scores_an_item_with_a_model_that_saw_it() -> None:
    human, machine, _, second = _shared_and_independent(600, 2)
    calls: Calls = []
    folds = fold_assignment(600, 3, seed=0)
    assert np.bincount(folds).tolist() == [200, 200, 200]
    out = cross_fitted_wrong_prob(human, machine, folds, _fit_from(second, machine, calls))
    assert len(calls) == 3
    scored: set[int] = set()
    for trained, scored_now, _ in calls:
        assert not trained & scored_now
        scored |= scored_now
    assert scored == set(range(600))
    assert np.allclose(out, second)


def test_feedback_loop_finds_more_errors_than_the_critic_alone() -> None:
    """The second critic's misses are independent of the critic's, so the fused
    second round finds wrong labels the critic ranks low (seeded simulation)."""
    gains = []
    for seed in range(5):
        human, machine, eps, second = _shared_and_independent(4000, seed)
        budget = 800  # the ideal budget: 20% errors
        calls: Calls = []
        fed = feedback_reviews(
            eps, machine, human, budget, rounds=2, folds=2, seed=seed,
            fit_proba=_fit_from(second, machine, calls),
        )  # fmt: skip
        once = top_unreviewed(eps, np.zeros(eps.size, bool), budget, np.arange(eps.size))
        found_once = int((machine[once] != human[once]).sum())
        found_fed = sum(r.errors_found for r in fed.rounds)
        assert found_fed == int((machine[fed.delta] != human[fed.delta]).sum())
        assert fed.reviewed == budget
        assert [r.reviewed for r in fed.rounds] == [400, 400]
        assert fed.rounds[0].fusion is None and fed.rounds[1].fusion is not None
        # Round 2 only: one model of all reviews for the unreviewed items, one
        # per fold of the reviewed items for the fusion's out-of-sample scores.
        assert len(calls) == 3
        reviewed_then = set(np.flatnonzero(fed.delta).tolist())
        for trained, scored, _ in calls:
            assert trained <= reviewed_then and not trained & scored
        # pi records the decision: 1 where reviewed, 0 elsewhere.
        assert np.array_equal(fed.pi, fed.delta.astype(float))
        gains.append(found_fed - found_once)
    assert min(gains) > 0
    assert np.mean(gains) > 40


def test_feedback_never_reads_the_human_label_of_an_unreviewed_item() -> None:
    human, machine, eps, second = _shared_and_independent(1500, 4)
    seen: Calls = []
    first = feedback_reviews(
        eps, machine, human, 300, rounds=3, folds=2, seed=0,
        fit_proba=_fit_from(second, machine, seen),
    )  # fmt: skip
    scrambled = human.copy()
    never = ~first.delta
    scrambled[never] = (scrambled[never] + 2) % K  # the truth changes only where no one looked
    seen_again: Calls = []
    again = feedback_reviews(
        eps, machine, scrambled, 300, rounds=3, folds=2, seed=0,
        fit_proba=_fit_from(second, machine, seen_again),
    )  # fmt: skip
    assert np.array_equal(first.delta, again.delta)
    # The models trained on the same labels: human where reviewed, machine elsewhere.
    assert len(seen) == len(seen_again) == 6
    for (_, _, a), (_, _, b) in zip(seen, seen_again, strict=True):
        assert np.array_equal(a, b)
        assert np.array_equal(a[never], machine[never])


def test_the_act_data_second_critic_is_cross_fitted_over_all_items() -> None:
    human, machine, eps, second = _shared_and_independent(3000, 6)
    calls: Calls = []
    fed = feedback_reviews(
        eps, machine, human, 600, rounds=2, folds=2, seed=1,
        fit_proba=_fit_from(second, machine, calls), second="act_data",
    )  # fmt: skip
    assert fed.reviewed == 600 and len(calls) == 2
    assert set().union(*(scored for _, scored, _ in calls)) == set(range(3000))
    for trained, scored, _ in calls:
        assert not trained & scored
        assert len(trained) == 1500  # machine labels of unreviewed items too


def test_the_last_rounds_score_is_eps_with_one_round_and_fused_after() -> None:
    human, machine, eps, second = _shared_and_independent(1500, 4)
    once = feedback_reviews(
        eps, machine, human, 300, rounds=1, folds=2, seed=0,
        fit_proba=_fit_from(second, machine, []),
    )  # fmt: skip
    assert np.array_equal(once.score, eps)
    fed = feedback_reviews(
        eps, machine, human, 300, rounds=3, folds=2, seed=0,
        fit_proba=_fit_from(second, machine, []),
    )  # fmt: skip
    assert fed.score.shape == eps.shape and not np.array_equal(fed.score, eps)
    assert ((fed.score >= 0) & (fed.score <= 1)).all()
    # The fused score finds wrong machine labels sooner than eps (ABS, paper sec. 4).
    assert abs_score(machine, human, fed.score) > abs_score(machine, human, eps) + 0.02


def test_feedback_rejects_bad_input() -> None:
    fit = _fit_from(np.zeros(10), np.zeros(10, int), [])
    with pytest.raises(ValueError, match="budget"):
        feedback_reviews(np.zeros(10), np.zeros(10), np.zeros(10), 11, rounds=2, folds=2, seed=0,
                         fit_proba=fit)  # fmt: skip
    with pytest.raises(ValueError, match="same length"):
        feedback_reviews(np.zeros(10), np.zeros(9), np.zeros(10), 1, rounds=2, folds=2, seed=0,
                         fit_proba=fit)  # fmt: skip
    with pytest.raises(ValueError, match="2 folds"):
        fold_assignment(10, 1, 0)


def test_table_with_the_baselines_and_the_feedback_loop(tmp_path: Path) -> None:
    """Every extra row trains, spends exactly its budget, and the report compares it paired."""
    data = synthetic_data(300)
    ann = synthetic_annotations(data)
    rows = ("random_subset", "act_random_critic", "act_oracle_critic", "act_thre_feedback",
            "act_exp_nonneg", "cl_machine_only", "cl_act_thre", "act_thre_agree",
            "act_thre_feedback_agree", "act_thre_trust", "act_thre_feedback_trust",
            "pseudo_labels", "active_pseudo_labels", "act_cdi", "act_thre_plc")  # fmt: skip
    cfg = TableConfig(
        epochs=1,
        lambdas=(1.0,),
        extra_methods=rows,
        plus_budget=0.1,
        plus_methods=("act_thre", "act_thre_feedback"),
    )
    result = compute_table(data, ann, seeds=2, config=cfg)
    assert [m.key for m in result.methods][-len(rows) :] == list(rows)
    b_items = int(np.floor(result.budget * result.n_train + 1e-9))
    by = {
        key: [r for r in result.runs if r.method == key and r.budget == result.budget]
        for key in rows
    }
    plus = result.budget + 0.1
    assert {
        r.reviewed for r in result.runs if r.method == "act_thre_feedback" and r.budget == plus
    } == {int(np.floor(plus * result.n_train + 1e-9))}
    assert all(len(runs) == 2 for runs in by.values())
    for key in ("random_subset", "act_oracle_critic", "act_thre_feedback", "cl_act_thre",
                "act_thre_agree", "act_thre_feedback_agree", "act_thre_trust",
                "act_thre_feedback_trust", "pseudo_labels", "active_pseudo_labels",
                "act_thre_plc"):  # fmt: skip
        assert {r.reviewed for r in by[key]} == {b_items}  # pruning keeps reviewed rows
    # CDI draws independently (a Poisson design): B reviews in expectation.
    assert all(abs(r.reviewed - b_items) < 0.25 * b_items + 10 for r in by["act_cdi"])
    # Its burn-in and uniform share review some items with a small pi, and say so.
    assert all(0.0 < r.min_pi_reviewed < 0.5 for r in by["act_cdi"])
    summary = result.summary()
    for key in rows:
        assert np.isfinite(summary[f"fashion_gap_human_{key}"])
    best = result.recommended()
    assert best is not None and best.candidate
    assert best.key not in ("act_oracle_critic", "human_only", "random_subset")
    assert summary["fashion_gap_human_act_best"] == pytest.approx(result.gap(best.key))
    assert result.methods[int(summary["fashion_best_row"])] == best
    diffs = result.paired_differences("act_thre_feedback", "act_thre")
    assert len(diffs) == 2
    text = write_report(result, tmp_path)["table"].read_text()
    assert "## Recommended method and paired differences" in text
    paired = text.split("## Recommended method and paired differences")[1].splitlines()
    header = next(line for line in paired if line.startswith("| Method | vs "))
    assert header.endswith("| vs random subset | vs active pseudo-labelling |")
    # Reference rows are compared too (with the others, never with themselves).
    row = next(line for line in paired if line.startswith("| Reviewed items only"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells[2] == "n/a" and cells[0] != "n/a" and cells[4].endswith("/2)")
    assert "## At the budget + 10 points" in text
    assert summary["fashion_gap_human_act_thre_plus10"] == pytest.approx(
        result.mean("human_only") - result.mean("act_thre", plus)
    )
    assert f"| {METHODS_BY_KEY['act_thre_feedback'].label} |" in text


def test_rows_extra_rows_and_unknown_rows() -> None:
    with pytest.raises(ValueError, match="unknown methods"):
        default_rows(TableConfig(extra_methods=("act_psychic",)))
    with pytest.raises(ValueError, match="unknown methods"):
        default_rows(TableConfig(rows=("human_only", "act_psychic")))
    with pytest.raises(ValueError, match="human_only"):
        default_rows(TableConfig(rows=("act_thre",)))
    focused = default_rows(TableConfig(rows=("human_only", "act_thre_agree", "act_thre")))
    assert [m.key for m in focused] == ["human_only", "act_thre_agree", "act_thre"]
    full = [m.key for m in default_rows(TableConfig(extra_methods=("random_subset",)))]
    assert full[0] == "human_only" and full[-2:] == ["reviewed_only", "random_subset"]


def test_cleaning_rows_train_in_worker_processes() -> None:
    """The training pool's spawned workers run the cleanings too (cleanlab included)."""
    data = synthetic_data(200)
    ann = synthetic_annotations(data)
    rows = ("cl_machine_only", "cl_act_thre", "act_thre_agree")
    cfg = TableConfig(epochs=1, lambdas=(1.0,), extra_methods=rows, workers=2)
    result = compute_table(data, ann, seeds=1, config=cfg)
    for key in rows:
        assert len([r for r in result.runs if r.method == key]) == 1
