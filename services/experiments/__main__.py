"""``python -m services.experiments``: the paper's Table 3 for Fashion-MNIST or SpamAssassin.

Example::

    python -m services.experiments --dataset fashion --seeds 5 --n-train 60000 --out reports/

writes ``reports/fashion/table.md``, ``results.json`` and two PNG plots, and
prints the table. ``--preset bench`` uses the small, fast settings of
``make bench``; ``--preset report`` (default) the full-size ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from services.experiments.presets import PRESETS, preset
from services.experiments.report import markdown_table, write_report
from services.experiments.table import table_result


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _keys(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(
        prog="python -m services.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        choices=["fashion", "spam"],
        action="append",
        required=True,
        help="data set (repeat for both)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="report")
    p.add_argument("--seeds", type=int, default=None, help="runs per method (paper: 5)")
    p.add_argument("--n-train", type=int, default=None, help="training items (default: preset)")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="human budget as a fraction (default: the ideal budget)",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--learning-rates", type=_floats, default=None, help="e.g. 1e-2,1e-3")
    p.add_argument("--lambdas", type=_floats, default=None, help="e.g. 0.6,0.7,0.8,0.9,1.0")
    p.add_argument("--search", choices=["first_seed", "every_seed"], default=None)
    p.add_argument(
        "--curve-budgets",
        type=_floats,
        default=None,
        help="budgets of the accuracy-vs-budget plot, e.g. 0.05,0.1,0.2,0.3",
    )
    p.add_argument(
        "--extra-rows",
        type=_keys,
        default=None,
        help="rows beyond Table 3 and reviewed-only, comma-separated keys "
        "(default: the preset's; '' for none), e.g. random_subset,act_thre_agree",
    )
    p.add_argument(
        "--rows",
        type=_keys,
        default=None,
        help="exactly these rows instead of the preset's (a focused run; must include "
        "human_only), e.g. human_only,act_thre,reviewed_only,act_thre_feedback_agree",
    )
    p.add_argument("--betas", type=_floats, default=None, help="exponential weighting, e.g. 10")
    p.add_argument(
        "--workers", type=int, default=None, help="training processes (default: the preset's)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: torch's, 1 in worker processes); 1 keeps "
        "an in-process run from competing with itself on a busy machine",
    )
    p.add_argument(
        "--plus-budget",
        type=float,
        default=None,
        help="also train the plus rows at the budget + this fraction (default: the "
        "preset's, 0.10 in report; 0 turns it off)",
    )
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the tables and write the reports."""
    args = parse_args(argv)
    for dataset in args.dataset:
        settings = preset(args.preset, dataset)
        cfg = settings.config
        overrides = {
            "epochs": args.epochs,
            "learning_rates": args.learning_rates,
            "lambdas": args.lambdas,
            "search": args.search,
            "curve_budgets": args.curve_budgets,
            "extra_methods": args.extra_rows,
            "rows": args.rows,
            "betas": args.betas,
            "workers": args.workers,
            "threads": args.threads,
        }
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        if args.plus_budget is not None:
            cfg = replace(cfg, plus_budget=args.plus_budget or None)
        started = time.perf_counter()
        progress = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
        result = table_result(
            dataset,
            seeds=args.seeds or settings.seeds,
            n_train=args.n_train or settings.n_train,
            budget=args.budget,
            config=cfg,
            n_test=settings.n_test,
            progress=progress,
        )
        paths = write_report(result, args.out / dataset)
        print(markdown_table(result))
        print(
            f"wrote {', '.join(str(p) for p in paths.values())} "
            f"in {time.perf_counter() - started:.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
