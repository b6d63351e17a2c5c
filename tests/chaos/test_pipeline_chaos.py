"""The whole pipeline under chaos, small: every service SIGKILLed, the broker and
the database restarted, and still one outcome per item.

:func:`services.devkit.chaos.run_chaos` starts its own broker and PostgreSQL
(the session's shared ones are never restarted), the six services as
processes, streams 3,000 Fashion-MNIST items through the ingest service with
the replay reviewer answering, and meanwhile SIGKILLs each of the six once
(order and moments drawn from the seed; each is SERVING again before the
next disruption), restarts the broker once and the database once. Then, read
``read_committed``: every accepted item has exactly one outcome (a
FinalLabel, or a dead letter with its reason) per record the ingest service
published, reviews stay within the paced budget, every review the gateway
accepted is in a human FinalLabel, and the trainer's store holds each item
once. ``make chaos`` is the same at full size.
"""

from __future__ import annotations

import pytest

from services.devkit.chaos import ChaosConfig, plan_events, run_chaos
from services.devkit.chaos_fleet import SERVICES

# Six kills, one per service (the order and the moments drawn from the seed).
CONFIG = ChaosConfig(
    items=3000, kills=6, min_services_killed=6, broker_restarts=1, db_restarts=1, seed=7
)


def test_plan_is_deterministic_and_spread() -> None:
    plan = plan_events(CONFIG)
    assert plan == plan_events(CONFIG)
    kills = [e.service for e in plan if e.kind == "kill"]
    assert sorted(kills) == sorted(SERVICES)
    assert [e.kind for e in plan].count("broker") == 1
    assert [e.kind for e in plan].count("database") == 1
    assert [e.at_s for e in plan] == sorted(e.at_s for e in plan)


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(480)
async def test_pipeline_survives_kills_and_restarts() -> None:
    result = await run_chaos(CONFIG, print)
    line = result.line()
    print(line)
    t = result.tally
    assert t.items == CONFIG.items and result.refused == 0, line
    assert sum(result.kills.values()) == 6 and len(result.kills) == 6, line
    assert (result.broker_restarts, result.db_restarts) == (1, 1), line
    assert (t.lost, t.duplicated, t.unknown) == (0, 0, 0), line
    assert t.labelled_items + t.dead_letters >= t.items, line
    assert t.dead_letters_without_reason == 0, line
    assert t.human_labels <= t.review_requests <= t.budget_bound, line
    assert (t.reviews_lost, t.trainer_duplicates, t.trainer_missing) == (0, 0, 0), line
    # A review accepted just before a kill may reach its label unseen by the reviewer.
    assert 0 < t.reviews_submitted <= t.human_labels, line
    assert result.ok, line
