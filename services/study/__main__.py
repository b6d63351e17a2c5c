"""``python -m services.study``: run the strategy study and write docs/study/.

    python -m services.study                      # sized to 110 minutes
    python -m services.study --items 40           # a fixed subset
    python -m services.study --server smollm2=http://127.0.0.1:8089/v1 \\
        --profile smollm2 --items 4               # a running server, no start/stop

Raw per-call results stay in ``.local/study/`` (resumable: a rerun with the
same seed and text cut skips calls already made).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from services.study.driver import run_study
from services.study.plan import ANNOTATION_STRATEGIES, CRITIC_STRATEGIES, PROFILES, StudyConfig
from services.study.report import RunInfo, write_report

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m services.study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", action="append", choices=PROFILES, help="repeatable; default all")
    p.add_argument("--annotation", action="append", choices=list(ANNOTATION_STRATEGIES))
    p.add_argument("--critic", action="append", choices=list(CRITIC_STRATEGIES))
    p.add_argument(
        "--pairs",
        choices=["base", "all"],
        default="base",
        help="criticise the base annotator's labels (paper) or every model's",
    )
    p.add_argument("--base-annotation", choices=list(ANNOTATION_STRATEGIES), default="cot")
    p.add_argument("--base-model", default="", help="default: the most accurate model")
    p.add_argument("--budget-minutes", type=float, default=110.0)
    p.add_argument("--items", type=int, default=None, help="fixed subset size (no sizing)")
    p.add_argument("--calibration-items", type=int, default=3)
    p.add_argument(
        "--chunk-items",
        type=int,
        default=5,
        help="critique this many items at a time; stop when the next chunk "
        "would end past the budget",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-text-chars", type=int, default=600)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="PROFILE=URL",
        help="use a running server for a profile (not started or stopped)",
    )
    p.add_argument("--out", type=Path, default=REPO / "docs" / "study")
    p.add_argument("--state", type=Path, default=REPO / ".local" / "study")
    return p.parse_args(argv)


def config_of(args: argparse.Namespace) -> StudyConfig:
    """The study's configuration from the parsed flags."""
    servers = {}
    for spec in args.server:
        profile, sep, url = spec.partition("=")
        if not sep or not url:
            raise ValueError(f"--server wants PROFILE=URL, got {spec!r}")
        servers[profile] = url
    return StudyConfig(
        # Weakest first, whatever the flag order: insight 1 takes the last as the strongest.
        profiles=tuple(p for p in PROFILES if not args.profile or p in args.profile),
        annotation_strategies=tuple(args.annotation or ANNOTATION_STRATEGIES),
        critic_strategies=tuple(args.critic or CRITIC_STRATEGIES),
        pairs=args.pairs,
        base_annotation=args.base_annotation,
        base_model=args.base_model,
        budget_minutes=args.budget_minutes,
        items=args.items,
        calibration_items=args.calibration_items,
        chunk_items=args.chunk_items,
        seed=args.seed,
        max_text_chars=args.max_text_chars,
        resamples=args.resamples,
        servers=servers,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the study and write the report; 0 on success, 2 on bad flags."""
    started = time.monotonic()
    args = parse_args(argv)
    try:
        config = config_of(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    outcome = run_study(config, args.state, say)
    # From the command's start to the last server stopped: what `make study` took
    # for the models (the report's bootstrap and figures follow).
    wall_s = time.monotonic() - started
    params = {k: v for k, v in asdict(config).items() if k != "servers"}
    params["n_items"] = len(outcome.data.item_ids)
    params["base_model"] = outcome.data.base_model
    info = RunInfo(
        wall_s=wall_s,
        sizing_reason=outcome.sizing.reason,
        parameters=params,
        date=time.strftime("%Y-%m-%d", time.gmtime()),
        reused_calls=outcome.reused_calls,
        model_call_s=outcome.model_call_s,
    )
    path = write_report(outcome.data, info, args.out, resamples=config.resamples, seed=config.seed)
    say(
        f"report: {path} (wall time {wall_s / 60:.1f} min, with the report "
        f"{(time.monotonic() - started) / 60:.1f} min)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
