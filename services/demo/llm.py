"""The main job on a real local LLM (``--backend llm``): server, model selection, settings.

The annotator and the criticizer run on one local model server
(``deploy/llm-server.sh``, a verified Qwen2.5-Coder profile), the same way a
user runs them on a rented vLLM server: through the OpenAI-compatible API,
with grammar-constrained answers and real token log-probabilities.

Model selection (step 2) asks the model itself on the human-labelled
selection set, as ``act select-models`` does, for each criticism strategy in
:data:`STRATEGIES` (cheap enough for a CPU: a few tokens per call), and the
stream uses the one with the best ABS on that set. The item text is cut to
``llm_max_text_chars`` in prompts: the local model's context is small, and
the start of an e-mail decides most labels.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from act.v1 import common_pb2, task_pb2

from services.core.metrics import accuracy, recommended_budget
from services.demo.plan import DemoConfig, Plan, Selection
from services.devkit.processes import REPO_ROOT, free_port
from services.evaluation.candidates import (
    LLMSpec,
    build_llm_candidate,
    close_candidates,
    run_selection,
)
from services.llm.settings import LOCAL_SERVER_OPTIONS

Say = Callable[[str], None]

#: Criticism strategies compared in model selection: one white-box (the
#: label's own probability) and one black-box (the model's yes/no), each a
#: few generated tokens.
STRATEGIES: dict[str, common_pb2.CritiqueStrategy.ValueType] = {
    "naive-logit": common_pb2.CRITIQUE_STRATEGY_NAIVE_LOGIT,
    "naive": common_pb2.CRITIQUE_STRATEGY_NAIVE,
}


def llm_options(config: DemoConfig) -> dict[str, object]:
    """LLM client options of the demo (one CPU server, one or two requests at a time)."""
    return {**LOCAL_SERVER_OPTIONS, "max_text_chars": config.llm_max_text_chars}


def stage_env(config: DemoConfig, base_url: str) -> dict[str, str]:
    """Environment (without the service prefix) of the annotator and the criticizer."""
    env = {
        "BACKEND": "llm",
        "PROVIDER": "openai",
        "BASE_URL": base_url,
        "MODEL": config.llm_profile,
        "MAX_IN_FLIGHT": "4",
        "HANDLER_TIMEOUT_S": "900",
    }
    for key, value in llm_options(config).items():
        env[key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextlib.contextmanager
def llm_server(config: DemoConfig, run_dir: Path, say: Say) -> Iterator[str]:
    """The profile's server on a free port for the run (weights verified first); its URL."""
    env = {
        **os.environ,
        "ACT_STACK_DIR": str(run_dir / "llm"),
        "ACT_LLM_PORT": str(int(os.environ.get("ACT_DEMO_LLM_PORT", "0")) or free_port()),
        "ACT_LLM_PROFILE": config.llm_profile,
        "ACT_LLM_START_TIMEOUT": "300",
        "PYTHON": sys.executable,
    }
    script = str(REPO_ROOT / "deploy" / "llm-server.sh")
    say(f"   local model server: profile {config.llm_profile} (weights fetched pinned and "
        "verified on first use, see the README)")  # fmt: skip
    subprocess.run(["bash", script, "up"], env=env, check=True, timeout=3600)
    try:
        yield f"http://127.0.0.1:{env['ACT_LLM_PORT']}/v1"
    finally:
        subprocess.run(["bash", script, "down"], env=env, check=False, timeout=120)


async def select_llm(
    config: DemoConfig, draft: task_pb2.Task, plan: Plan, base_url: str, say: Say
) -> tuple[Selection, common_pb2.CritiqueStrategy.ValueType]:
    """Annotator accuracy, the best criticism strategy by ABS, and the budget (section 4.3)."""
    items = plan.pool.items(plan.selection, draft.task_id)
    human = np.array([plan.pool.label_of(int(i)) for i in plan.selection], dtype=np.int64)
    spec = LLMSpec("openai", config.llm_profile, base_url)
    candidate = build_llm_candidate(spec, **llm_options(config))
    results: dict[str, tuple[float, float, float]] = {}
    try:
        for name, strategy in STRATEGIES.items():
            run = await run_selection(
                [candidate], draft, items, human.tolist(), critique_strategy=strategy,
                concurrency=2,
            )  # fmt: skip
            report = run.report
            pair_abs = report.pairs[0].abs if report.pairs else 0.0
            labels = run.labels[candidate.name]
            results[name] = (pair_abs, accuracy(labels, human), report.ideal_budget)
            say(f"   critic strategy {name}: ABS {pair_abs:.3f} "
                f"({run.failures.get(candidate.name, 0)} failed annotations)")  # fmt: skip
    finally:
        await close_candidates([candidate])
    best = max(results, key=lambda n: results[n][0])
    best_abs, acc, ideal = results[best]
    return (
        Selection(
            annotator=f"{config.llm_profile} (naive)",
            critic=f"{config.llm_profile} ({best}, self-criticism)",
            accuracy=acc,
            critic_abs=best_abs,
            ideal_budget=ideal,
            recommended_budget=recommended_budget(ideal),
        ),
        STRATEGIES[best],
    )
