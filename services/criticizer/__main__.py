"""``python -m services.criticizer``: run the criticizer stage (settings from ``ACT_CRITICIZER_*``).

Backend: an LLM behind an OpenAI-compatible server (OpenAI, vLLM, llama.cpp)
or the Anthropic API (``ACT_CRITICIZER_PROVIDER``, ``_MODEL``, ``_BASE_URL``,
``_API_KEY``, ``_CONCURRENCY``, ``_TIMEOUT_S``...), or the CPU few-shot pair
(``ACT_CRITICIZER_BACKEND=local-fewshot``, see :mod:`services.fewshot.routing`).
White-box strategies need an OpenAI-compatible server that returns token
logprobs. Settings: :mod:`services.criticizer.settings`; the backend:
:mod:`services.backends.build`.
"""

from __future__ import annotations

from services.backends.build import build_backend_stage
from services.criticizer.settings import CriticizerSettings
from services.criticizer.stage import STRATEGIES, CriticizerStage
from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings


def build_stage(settings: CriticizerSettings, kafka: KafkaSettings) -> CriticizerStage:
    """The stage these settings describe (clients connect and models fit lazily)."""
    return build_backend_stage(
        CriticizerStage,
        "critic",
        settings,
        kafka,
        default_strategy=STRATEGIES[settings.default_strategy],
    )


def main() -> None:
    """Build the stage from the environment and run it until SIGTERM."""
    settings = CriticizerSettings()
    kafka = KafkaSettings()
    run_stage_main(build_stage(settings, kafka), kafka, settings.stage)


if __name__ == "__main__":
    main()
