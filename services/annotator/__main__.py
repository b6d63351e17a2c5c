"""``python -m services.annotator``: run the annotator stage (settings from ``ACT_ANNOTATOR_*``).

Backend: an LLM behind an OpenAI-compatible server (OpenAI, vLLM, llama.cpp)
or the Anthropic API (``ACT_ANNOTATOR_PROVIDER``, ``_MODEL``, ``_BASE_URL``,
``_API_KEY``, ``_CONCURRENCY``, ``_TIMEOUT_S``...), or the CPU few-shot pair
(``ACT_ANNOTATOR_BACKEND=local-fewshot``, see :mod:`services.fewshot.routing`). Tasks come from the
compacted tasks topic. Settings: :mod:`services.annotator.settings`; the
backend: :mod:`services.backends.build`.
"""

from __future__ import annotations

from services.annotator.settings import AnnotatorSettings
from services.annotator.stage import STRATEGIES, AnnotatorStage
from services.backends.build import build_backend_stage
from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings


def build_stage(settings: AnnotatorSettings, kafka: KafkaSettings) -> AnnotatorStage:
    """The stage these settings describe (clients connect and models fit lazily)."""
    return build_backend_stage(
        AnnotatorStage,
        "annotator",
        settings,
        kafka,
        default_strategy=STRATEGIES[settings.default_strategy],
    )


def main() -> None:
    """Build the stage from the environment and run it until SIGTERM."""
    settings = AnnotatorSettings()
    kafka = KafkaSettings()
    run_stage_main(build_stage(settings, kafka), kafka, settings.stage)


if __name__ == "__main__":
    main()
