"""The chaos run's counting (pure): lost, duplicated, republished, budget, reviews, store."""

from __future__ import annotations

from collections import Counter

from services.devkit.chaos_check import DeadLetterSeen, LabelSeen, Tally, budget_bound, tally


def machine(item_id: str) -> LabelSeen:
    return LabelSeen(item_id, False, "")


def human(item_id: str, review_id: str) -> LabelSeen:
    return LabelSeen(item_id, True, review_id)


def count(**overrides: object) -> Tally:
    values: dict[str, object] = {
        "accepted": {"a", "b", "c"},
        "item_records": Counter({"a": 1, "b": 1, "c": 1}),
        "labels": [machine("a"), human("b", "r-b")],
        "dead_letters": [DeadLetterSeen("c", "annotator", "ParseError")],
        "review_requests": 1,
        "bound": 1,
        "reviews": {"b": "r-b"},
        "trainer_ids": ["a", "b"],
    }
    values.update(overrides)
    return tally(**values)  # type: ignore[arg-type]


def test_one_outcome_per_item_is_ok() -> None:
    t = count()
    assert (t.items, t.labels, t.human_labels, t.dead_letters, t.lost, t.duplicated) == (
        3, 2, 1, 1, 0, 0,
    )  # fmt: skip
    assert t.ok


def test_missing_outcome_is_lost_and_a_second_label_is_a_duplicate() -> None:
    t = count(labels=[machine("a"), machine("a")], trainer_ids=["a"])
    assert (t.lost, t.duplicated) == (1, 1) and not t.ok


def test_a_republished_item_may_pass_twice_but_never_gets_two_human_labels() -> None:
    records = Counter({"a": 2, "b": 1, "c": 1})
    t = count(item_records=records, labels=[machine("a"), machine("a"), human("b", "r-b")])
    assert (t.republished, t.duplicated) == (1, 0) and t.ok
    twice = [human("a", "r1"), human("a", "r2"), human("b", "r-b")]
    assert count(item_records=records, labels=twice, review_requests=3, bound=3).duplicated == 1


def test_reviews_budget_store_and_reasons() -> None:
    assert count(reviews={"b": "r-other"}).reviews_lost == 1
    assert not count(review_requests=2).ok  # over the bound
    assert count(trainer_ids=["a"]).trainer_missing == 1
    assert count(trainer_ids=["a", "b", "b"]).trainer_duplicates == 1
    assert count(dead_letters=[DeadLetterSeen("c", "annotator", "")]).dead_letters_without_reason
    assert count(labels=[machine("a"), human("b", "r-b"), machine("zz")]).unknown == 1


def test_budget_bound_is_the_pacer_cap_per_partition() -> None:
    # b = 0.2, W = 50: at most 10 per full window, and per partial window min(rest, 10).
    assert budget_bound({0: 100, 1: 57, 2: 3}, 0.2, 50) == 20 + (10 + 7) + 3
    assert budget_bound({0: 750, 1: 750, 2: 750, 3: 750}, 0.2, 50) == 600
