"""Writing a Table-3 result: a Markdown table in the paper's layout, JSON, and PNG plots.

Files written to the output directory:

* ``table.md``: the table (rows as in the paper's Table 3), the gaps and the
  budget, then how it was computed (annotator, critic, sizes, selected
  hyper-parameters, timings);
* ``results.json``: every trained model's numbers, for further analysis;
* ``aqg_vs_budget.png``: AQG of the annotator/critic pair against the human
  budget (appendix F.1, Figure 11), with the random and oracle critics;
* ``accuracy_vs_budget.png``: annotation accuracy and downstream test
  accuracy against the budget, the ideal budget marked and the 10-point buffer
  shaded (appendix F.2, Figure 12).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.core.metrics import DEFAULT_BUDGET_BUFFER, recommended_budget
from services.experiments.methods import (
    ACT_EXP,
    ACT_THRE,
    HUMAN_ONLY,
    MACHINE_ONLY,
)
from services.experiments.results import TableResult

#: Legend names of the methods.
SHORT_NAMES = {
    "human_only": "human only (CE)",
    "machine_only": "machine only (CE)",
    "act_data_ce": "ACT data, CE",
    "act_norm": "ACT norm. loss",
    "act_exp": "ACT exp. loss",
    "act_thre": "ACT thre. loss",
    "reviewed_only": "reviewed items only (CE)",
    "random_subset": "random subset of B (CE)",
    "act_random_critic": "ACT, random critic",
    "act_oracle_critic": "ACT thre., oracle critic",
    "act_thre_feedback": "ACT thre., feedback loop",
    "act_cdi": "CDI (ACT loss)",
}


def _cell(result: TableResult, key: str) -> str:
    mean, std = result.mean(key), result.std(key)
    return "n/a" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def markdown_table(result: TableResult) -> str:
    """The table in the paper's layout plus a section on how it was computed."""
    column = f"{result.dataset} ({result.model})"
    lines = [
        f"# Table 3: {result.dataset}",
        "",
        f"Test accuracy (%), mean ± std (sample, ddof=1) over {result.seeds} runs.",
        "",
        f"| Training Data - Loss | {column} |",
        "|---|---|",
    ]
    for method in result.methods:
        marker = " (Ours)" if method.key in (ACT_EXP.key, ACT_THRE.key) else ""
        lines.append(f"| {method.label}{marker} | {_cell(result, method.key)} |")
    gap_act = min(result.gap(ACT_EXP.key), result.gap(ACT_THRE.key))
    lines += [
        f"| Human-Machine performance gap (%) | {result.gap(MACHINE_ONLY.key):.2f} |",
        f"| Human-ACT performance gap (%) | {gap_act:.2f} |",
        f"| ACT human budget (%) | {100 * result.budget:.2f} |",
        "",
        "Gaps are human-only minus the method, in accuracy points; the Human-ACT gap is the",
        "better of the exponential and threshold ACT losses, as in the paper.",
        "",
        "## Per-method gaps to human-only (accuracy points)",
        "",
        "| Method | gap |",
        "|---|---|",
    ]
    for method in result.methods:
        if method.key != HUMAN_ONLY.key:
            lines.append(f"| {method.label} | {result.gap(method.key):.2f} |")
    lines += paired_section(result)
    lines += plus_section(result)
    lines += [
        "",
        "## Setup",
        "",
        f"- Training items: {result.n_train}; validation (human labels, used only to select"
        f" hyper-parameters): {result.n_val}; test: {result.n_test}.",
        f"- Annotator: `{result.annotator}`, accuracy {100 * result.annotator_accuracy:.2f}%"
        f" on the training items; critic: `{result.critic}`; few-shot seed: {result.seed_size}"
        " human-labelled examples.",
        f"- Human budget: {100 * result.budget:.2f}% of the training items (ideal budget ="
        f" annotator error rate = {100 * result.ideal_budget:.2f}%).",
        f"- AQG at the budget (thresholding): {100 * result.aqg_at_budget:.2f}%; annotation"
        f" accuracy of the ACT data: {100 * result.corrected_accuracy:.2f}%.",
        f"- Downstream model: `{result.model}`; epochs, batch size and grids: "
        f"`{_config_line(result)}`.",
        f"- Wall time: {result.seconds:.0f} s.",
        "",
        "## Selected hyper-parameters (validation accuracy on human labels)",
        "",
        "| Method | learning rate | lambda | beta | min pi of reviewed items | seconds per run |",
        "|---|---|---|---|---|---|",
    ]
    for method in result.methods:
        runs = [
            r
            for r in result.runs
            if r.method == method.key and math.isclose(r.budget, result.budget, abs_tol=1e-12)
        ]
        if not runs:
            continue
        first = runs[0]
        mean_s = sum(r.seconds for r in runs) / len(runs)
        lines.append(
            f"| {method.label} | {first.learning_rate:g} | "
            f"{first.power_lambda:g} | {'' if first.beta is None else f'{first.beta:g}'} | "
            f"{min(r.min_pi_reviewed for r in runs):.4f} | "
            f"{mean_s:.1f} |"
        )
    return "\n".join(lines) + "\n"


#: The rows every row is compared with seed by seed (key, column name): the
#: paper's losses and the baselines a budget must beat, the best of which on
#: Fashion-MNIST uses no LLM label (active pseudo-labelling).
PAIRED_REFERENCES = (
    (ACT_THRE.key, "ACT thre."),
    (ACT_EXP.key, "ACT exp."),
    ("reviewed_only", "reviewed only"),
    ("random_subset", "random subset"),
    ("active_pseudo_labels", "active pseudo-labelling"),
)


def paired_section(result: TableResult) -> list[str]:
    """The recommended row and every row's per-seed differences against the references."""
    best = result.recommended()
    lines = [
        "",
        "## Recommended method and paired differences",
        "",
        "Recommended: "
        + (
            f"**{best.label}** (best mean validation accuracy among the rows a user can"
            f" run, {result.val_mean(best.key):.2f}%; test accuracy never selects), gap to"
            f" human-only {result.gap(best.key):.2f} points."
            if best is not None
            else "none (no candidate row ran)."
        ),
        "",
        "Per-seed test accuracy of the row minus the reference row (same seed, same"
        " budget), in points: mean, worst seed and seeds won.",
        "",
        "| Method | " + " | ".join(f"vs {name}" for _, name in PAIRED_REFERENCES) + " |",
        "|---|" + "---|" * len(PAIRED_REFERENCES),
    ]
    for method in result.methods:
        if method.key == HUMAN_ONLY.key:
            continue
        cells = []
        for ref, _ in PAIRED_REFERENCES:
            diffs = [] if ref == method.key else result.paired_differences(method.key, ref)
            cells.append(
                f"{sum(diffs) / len(diffs):+.2f} (min {min(diffs):+.2f}, "
                f"{sum(d > 0 for d in diffs)}/{len(diffs)})"
                if diffs
                else "n/a"
            )
        lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
    return lines


def plus_section(result: TableResult) -> list[str]:
    """The rows trained again at the ideal budget plus the buffer (empty when off)."""
    c = result.config
    if c.plus_budget is None:
        return []
    plus = min(1.0, result.budget + c.plus_budget)
    lines = [
        "",
        f"## At the budget + {100 * c.plus_budget:.0f} points ({100 * plus:.2f}% of the items)",
        "",
        "| Method | test accuracy | gap to human-only |",
        "|---|---|---|",
    ]
    for method in result.methods:
        if method.key in c.plus_methods and result.accuracies(method.key, plus):
            mean, std = result.mean(method.key, plus), result.std(method.key, plus)
            gap = result.mean(HUMAN_ONLY.key) - mean
            lines.append(f"| {method.label} | {mean:.2f} ± {std:.2f} | {gap:.2f} |")
    return lines


def _config_line(result: TableResult) -> str:
    c = result.config
    return (
        f"epochs={result.epochs}, batch_size={result.batch_size}, "
        f"learning_rates={result.learning_rates}, "
        f"lambdas={c.lambdas}, search={c.search}, betas={c.betas}, alpha={c.alpha_method}, "
        f"pi_min={c.pi_min}, trimmed rules={[str(r) for r in c.trim_rules]}"
    )


def results_json(result: TableResult) -> dict[str, object]:
    """Everything in the result, JSON-serialisable."""
    return {
        "dataset": result.dataset,
        "model": result.model,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "n_test": result.n_test,
        "seeds": result.seeds,
        "budget": result.budget,
        "ideal_budget": result.ideal_budget,
        "annotator": result.annotator,
        "critic": result.critic,
        "annotator_accuracy": result.annotator_accuracy,
        "seed_size": result.seed_size,
        "epochs": result.epochs,
        "batch_size": result.batch_size,
        "learning_rates": list(result.learning_rates),
        "aqg_at_budget": result.aqg_at_budget,
        "corrected_accuracy": result.corrected_accuracy,
        "summary": result.summary(),
        "runs": [asdict(r) for r in result.runs],
        "config": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(result.config).items()
        },
        "seconds": result.seconds,
    }


def plot_aqg(result: TableResult, path: Path) -> None:
    """AQG against the budget for the critic, a random critic and the oracle (Figure 11)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.aqg_curve) - 1
    budgets = [100.0 * b / n for b in range(n + 1)]
    errors = round((1.0 - result.annotator_accuracy) * n)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(budgets, [100 * v for v in result.aqg_curve], label=f"critic {result.critic}", lw=2)
    ax.plot([0, 100], [0, 100], ls=":", color="grey", label="random critic (expected)")
    if errors > 0:
        ax.plot(
            budgets,
            [100 * min(b, errors) / errors for b in range(n + 1)],
            ls="--",
            color="black",
            lw=1,
            label="oracle critic",
        )
    _mark_budgets(ax, result)
    ax.set_xlabel("human budget (% of items)")
    ax.set_ylabel("AQG (%)")
    ax.set_title(f"{result.dataset}: annotation quality gain vs. budget")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _mark_budgets(ax: Any, result: TableResult) -> None:
    ideal = 100 * result.ideal_budget
    rec = 100 * recommended_budget(result.ideal_budget, DEFAULT_BUDGET_BUFFER)
    ax.axvline(ideal, color="black", lw=1)
    ax.axvspan(ideal, rec, color="grey", alpha=0.15, label="+10-point buffer")
    # x in data units, y in axes units: the label stays inside whatever the y range is.
    ax.text(ideal, 0.95, f" ideal {ideal:.1f}%", fontsize=8, transform=ax.get_xaxis_transform())


def plot_accuracy(result: TableResult, path: Path) -> None:
    """Annotation and downstream accuracy against the budget (Figure 12)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.aqg_curve) - 1
    acc_m = result.annotator_accuracy
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    budgets = [100.0 * b / n for b in range(n + 1)]
    ax.plot(
        budgets,
        [100 * (acc_m + v * (1 - acc_m)) for v in result.aqg_curve],
        color="tab:grey",
        lw=1.5,
        label="annotation accuracy (ACT data)",
    )
    by_method: dict[str, dict[float, list[float]]] = {}
    for r in result.runs:
        by_method.setdefault(r.method, {}).setdefault(r.budget, []).append(100 * r.test_accuracy)
    for key, series in by_method.items():
        if key in (HUMAN_ONLY.key, MACHINE_ONLY.key):
            continue
        if len(series) < 2 and key not in result.config.curve_methods:
            continue
        xs = sorted(series)
        ax.plot(
            [100 * x for x in xs],
            [sum(series[x]) / len(series[x]) for x in xs],
            marker="o",
            label=f"downstream: {SHORT_NAMES.get(key, key)}",
        )
    for key, style in ((HUMAN_ONLY.key, "-"), (MACHINE_ONLY.key, "--")):
        mean = result.mean(key)
        if not math.isnan(mean):
            ax.axhline(
                mean,
                ls=style,
                color="black",
                lw=1,
                label=f"downstream: {SHORT_NAMES.get(key, key)}",
            )
    _mark_budgets(ax, result)
    ax.set_xlabel("human budget (% of items)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{result.dataset}: accuracy vs. budget ({result.model})")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(result: TableResult, out_dir: Path) -> dict[str, Path]:
    """Write ``table.md``, ``results.json`` and the two plots; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out_dir / "table.md",
        "results": out_dir / "results.json",
        "aqg_plot": out_dir / "aqg_vs_budget.png",
        "accuracy_plot": out_dir / "accuracy_vs_budget.png",
    }
    paths["table"].write_text(markdown_table(result), encoding="utf-8")
    paths["results"].write_text(json.dumps(results_json(result), indent=2), encoding="utf-8")
    plot_aqg(result, paths["aqg_plot"])
    plot_accuracy(result, paths["accuracy_plot"])
    return paths
