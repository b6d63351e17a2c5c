"""The Figure 2/3/4 equivalents as PNGs (matplotlib, Agg: no display needed).

Bars are the point estimates on the run's items; error bars are the 95%
percentile bootstrap intervals, so a reader sees which differences are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from services.core.bootstrap import Interval
from services.study.metrics import Tables
from services.study.plan import CRITIC_STRATEGIES

FIG2 = "fig2_annotator_accuracy.png"
FIG3 = "fig3_blackbox_abs.png"
FIG4 = "fig4_black_vs_white.png"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _err(cis: list[Interval]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Asymmetric error bars in percent (NaN intervals draw none)."""
    low = [100 * (c.estimate - c.low) if np.isfinite(c.low) else 0.0 for c in cis]
    high = [100 * (c.high - c.estimate) if np.isfinite(c.high) else 0.0 for c in cis]
    return np.array([low, high], dtype=np.float64)


def _pct(cis: list[Interval]) -> list[float]:
    return [100 * c.estimate if np.isfinite(c.estimate) else 0.0 for c in cis]


def _grouped(ax: Any, groups: list[str], series: dict[str, list[Interval]], colors: Any) -> None:
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for k, (name, cis) in enumerate(series.items()):
        ax.bar(
            x + (k - (len(series) - 1) / 2) * width,
            _pct(cis),
            width,
            yerr=_err(cis),
            capsize=3,
            label=name,
            color=colors(k),
        )
    ax.set_xticks(x)
    ax.set_xticklabels(groups)


def plot_accuracy(tables: Tables, path: Path) -> None:
    """Figure 2: annotator accuracy per model, naive vs CoT."""
    plt = _plt()
    models = list(dict.fromkeys(r.model for r in tables.accuracy))
    strategies = list(dict.fromkeys(r.strategy for r in tables.accuracy))
    by = {(r.model, r.strategy): r.accuracy for r in tables.accuracy}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _grouped(ax, models, {s: [by[(m, s)] for m in models] for s in strategies}, plt.cm.tab10)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title("Annotator accuracy on SpamAssassin (95% bootstrap CI)")
    ax.legend(title="prompt")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_black_box(tables: Tables, base: str, path: Path) -> None:
    """Figure 3: ABS of the black-box strategies per critic on the base annotator's labels."""
    plt = _plt()
    rows = [r for r in tables.abs if r.annotator == base and not r.white_box]
    critics = list(dict.fromkeys(r.critic for r in rows))
    strategies = [s for s in CRITIC_STRATEGIES if any(r.strategy == s for r in rows)]
    by = {(r.critic, r.strategy): r.abs for r in rows}
    nan = Interval(float("nan"), float("nan"), float("nan"))
    fig, ax = plt.subplots(figsize=(7, 4))
    series = {s: [by.get((c, s), nan) for c in critics] for s in strategies}

    def shade(k: int) -> Any:
        # Shades of the paper's black-box green, spread over the colormap.
        return plt.cm.Greens(0.35 + 0.6 * k / max(1, len(strategies) - 1))

    groups = [f"{c}\n({'self' if c == base else 'cross'})" for c in critics]
    _grouped(ax, groups, series, shade)
    ax.axhline(50, color="grey", linestyle=":", linewidth=1, label="random critic")
    ax.set_ylabel("ABS (%)")
    ax.set_ylim(0, 115)
    ax.set_title(f"Black-box criticism of {base}'s labels (95% bootstrap CI)")
    ax.legend(fontsize=8, ncol=5, loc="upper center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_black_white(tables: Tables, base: str, path: Path) -> None:
    """Figure 4: every strategy per critic, black-box green, white-box blue, best black dashed."""
    plt = _plt()
    critics = list(dict.fromkeys(r.critic for r in tables.abs if r.annotator == base))
    fig, axes = plt.subplots(
        1, max(1, len(critics)), figsize=(4 * max(1, len(critics)), 4), sharey=True, squeeze=False
    )
    for ax, critic in zip(axes[0], critics, strict=False):
        rows = [r for r in tables.abs if r.annotator == base and r.critic == critic]
        cis = [r.abs for r in rows]
        colors = ["tab:blue" if r.white_box else "tab:green" for r in rows]
        ax.bar(range(len(rows)), _pct(cis), yerr=_err(cis), capsize=3, color=colors)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(
            [f"{r.strategy} ({'W' if r.white_box else 'B'})" for r in rows],
            rotation=60,
            ha="right",
            fontsize=8,
        )
        black = [
            100 * r.abs.estimate for r in rows if not r.white_box and np.isfinite(r.abs.estimate)
        ]
        if black:
            ax.axhline(max(black), color="k", linestyle="--", linewidth=1)
        ax.set_title(f"critic {critic}" + (" (self)" if critic == base else ""))
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("ABS (%)")
    fig.suptitle(f"Black-box (B) vs white-box (W) criticism of {base}'s labels")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_figures(tables: Tables, base: str, out_dir: Path) -> list[Path]:
    """All three PNGs into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / FIG2, out_dir / FIG3, out_dir / FIG4]
    plot_accuracy(tables, paths[0])
    plot_black_box(tables, base, paths[1])
    plot_black_white(tables, base, paths[2])
    return paths
