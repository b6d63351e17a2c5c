"""``python -m services.demo``: the main job (``make demo`` starts the local stack first).

Streams a real data set through the annotator, criticizer, sampler, review
gateway (with the replay reviewer at the recommended budget) and trainer
over Kafka with local models, fits with the ACT loss, then prints the
paper's Table 3 for the streamed data and writes it with two plots under
``--out``. Steps and their reasons: :mod:`services.demo.run`.

Options: ``--dataset fashion|spam`` (default fashion, a data set of the
paper), ``--items N``, ``--rule exponential|threshold|normalization``,
``--seeds``, ``--out``, ``--backend fewshot|llm`` (``llm``: a verified local
Qwen2.5-Coder model as annotator and critic, spam only; ``--llm-profile``
picks it; see :mod:`services.demo.llm`), ``--review-in-browser N`` (the replay reviewer
leaves N review requests for a person in the gateway's web workspace, and
the demo waits for them before training). The broker and the database come from
``ACT_KAFKA_BOOTSTRAP_SERVERS`` and ``ACT_DEMO_DATABASE_URL`` (the local
stack's defaults otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from act.v1 import common_pb2

from services.demo.plan import DATASETS, DemoConfig
from services.demo.run import stream_and_train, table_3
from services.runtime.logging import configure_logging


def say(message: str) -> None:
    """Progress on stdout, flushed (the demo is watched live)."""
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    """The run's configuration from the command line and environment."""
    p = argparse.ArgumentParser(prog="python -m services.demo", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion")
    p.add_argument("--items", type=int, default=0, help="items to stream (default: per data set)")
    p.add_argument("--rule", choices=["exponential", "threshold", "normalization"],
                   default="exponential", help="sampling rule of the stream")  # fmt: skip
    p.add_argument("--seeds", type=int, default=5, help="runs per method in Table 3")
    p.add_argument("--out", type=Path, default=Path("reports/demo"))
    p.add_argument("--backend", choices=["fewshot", "llm"], default="fewshot",
                   help="annotator and critic: the few-shot local models, or a local LLM "
                   "(verified Qwen2.5-Coder weights; spam only)")  # fmt: skip
    p.add_argument("--llm-profile", choices=["qwen-0.5b", "qwen-1.5b"], default="qwen-1.5b",
                   help="the local LLM with --backend llm (default qwen-1.5b)")  # fmt: skip
    p.add_argument("--review-in-browser", type=int, default=0, metavar="N",
                   help="leave N review requests for you in the web workspace; the replay "
                   "reviewer answers the rest (default 0)")  # fmt: skip
    args = p.parse_args(argv)
    dataset = DATASETS[args.dataset]
    if args.items < 0 or args.seeds < 1:
        p.error("--items must be >= 0 and --seeds >= 1")
    if args.review_in_browser < 0:
        p.error("--review-in-browser must be >= 0")
    if args.backend == "llm" and dataset.modality != common_pb2.MODALITY_TEXT:
        p.error("--backend llm needs a text data set (--dataset spam): no vision model "
                "runs offline here")  # fmt: skip
    # A CPU runs a local LLM at a few items per second: a few hundred items.
    llm = args.backend == "llm"
    default_items = 200 if llm else dataset.default_items
    return DemoConfig(
        dataset=dataset,
        items=args.items or default_items,
        out=args.out,
        bootstrap=os.environ.get("ACT_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_url=os.environ.get(
            "ACT_DEMO_DATABASE_URL", "postgresql://act:act@127.0.0.1:55432/act"
        ),
        rule=args.rule,
        seeds=args.seeds,
        review_in_browser=args.review_in_browser,
        backend=args.backend,
        llm_profile=args.llm_profile,
        selection_items=30 if llm else 500,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 on success."""
    config = parse_args(argv)
    configure_logging("demo", "WARNING")
    run_dir = (config.out / config.run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"ACT stream demo: {config.dataset.name}, run {config.run_id}, output {run_dir}")
    streamed = asyncio.run(stream_and_train(config, run_dir, say))
    table_3(config, run_dir, streamed, say)
    say(f"service logs: {run_dir / 'logs'}; total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
