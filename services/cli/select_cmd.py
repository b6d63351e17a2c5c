"""``act select-models``: rank candidate models on human-labelled items (paper, section 4.3)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from act.v1 import common_pb2, task_pb2

from services.cli import datasets, tasks
from services.cli.common import MAX_BAD_LINES_SHOWN, fail
from services.core.selection import render_report


def select_models_cmd(
    candidate: Annotated[
        list[str],
        typer.Option(
            "--candidate",
            "-c",
            help="A candidate model (repeatable): fewshot:SPEC[:K] "
            "(e.g. fewshot:logreg-minilm:16), openai:MODEL[@BASE_URL] (any OpenAI-compatible "
            "server) or anthropic:MODEL.",
        ),
    ],
    dataset: Annotated[
        str | None,
        typer.Option(help="A built-in labelled data set (spam-assassin, fashion-mnist, ...)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="JSONL of human-labelled texts: {text, label[, id]}."),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="Evaluate on this many items (default 200 for --dataset)."),
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Label names in index order for --file (default: sorted).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the item sample and the few-shot seeds.")] = 0,
    annotation_strategy: Annotated[str, typer.Option(help="naive or cot.")] = "naive",
    critique_strategy: Annotated[
        str, typer.Option(help="Criticizer strategy (naive, cot, multiple-choice, ...).")
    ] = "cot",
    pairs: Annotated[
        str,
        typer.Option(
            help="Pairs to criticise: all (every annotator x critic) or recommended "
            "(the best annotator with itself and the second best)."
        ),
    ] = "all",
    concurrency: Annotated[int, typer.Option(min=1, help="Model calls in flight.")] = 32,
    buffer: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Budget buffer over the ideal budget.")
    ] = 0.10,
    instructions: Annotated[
        str | None, typer.Option(help="Task description for LLM candidates' prompts.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """Rank candidate models on human-labelled items; recommend annotator, critic, budget.

    The paper's guideline (section 4.3): the most accurate candidate annotates,
    the second most accurate criticises. Reports every candidate's annotation
    accuracy, each annotator-critic pair's ABS, the ideal budget (the
    annotator's error rate) and the recommended budget (+10 points).
    """
    from services.evaluation import candidates as cands
    from services.fewshot import pools

    if (dataset is None) == (file is None):
        fail("give exactly one of --dataset and --file", 2)
    if pairs not in ("all", "recommended"):
        fail("--pairs must be all or recommended", 2)
    try:
        specs = [cands.parse_candidate(c) for c in candidate]
        a_strategy = tasks.parse_enum(
            common_pb2.AnnotationStrategy,
            "ANNOTATION_STRATEGY_",
            annotation_strategy,
            "annotation_strategy",
        )
        c_strategy = tasks.parse_enum(
            common_pb2.CritiqueStrategy,
            "CRITIQUE_STRATEGY_",
            critique_strategy,
            "critique_strategy",
        )
    except (cands.CandidateError, tasks.TaskError) as exc:
        fail(str(exc), 2)
    if len({s.name for s in specs}) != len(specs):
        fail("each --candidate must be different", 2)
    fewshot_specs = [s for s in specs if isinstance(s, cands.FewShotSpec)]
    try:
        if dataset is not None:
            pool = pools.builtin_pool(dataset)
        else:
            assert file is not None
            names = tasks.split_labels(labels) if labels else None
            pool = pools.text_pool_from_jsonl(file, names)
        sets = cands.plan_sets(
            pool,
            n=n if n is not None or file is not None else 200,
            seed=seed,
            fewshot=fewshot_specs,
            seed_first=file is not None,
        )
    except datasets.DatasetMissingError as exc:
        fail(str(exc))
    except (ValueError, OSError) as exc:
        fail(str(exc), 2)
    for spec in fewshot_specs:
        from services.fewshot.model import FEWSHOT_SPECS

        if FEWSHOT_SPECS[spec.spec].modality != pool.modality:
            fail(
                f"{spec.name} is a model for {FEWSHOT_SPECS[spec.spec].modality} data; "
                f"the data is {pool.modality}",
                2,
            )

    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    modality = common_pb2.MODALITY_TEXT if pool.modality == "text" else common_pb2.MODALITY_IMAGE
    task = task_pb2.Task(
        task_id="select-models",
        name=f"model selection on {pool.name}",
        labels=[task_pb2.Label(index=i, name=name) for i, name in enumerate(pool.label_names)],
        modality=modality,
        instructions=instructions
        or f"Classify the {pool.modality} into exactly one of the labels.",
        annotation_strategy=a_strategy,
        critique_strategy=c_strategy,
    )
    items = sets.eval_pool.items(range(len(sets.eval_pool)), task.task_id)
    human = [int(v) for v in sets.eval_pool.labels]

    async def go() -> cands.SelectionRun:
        built: list[cands.Candidate] = []
        try:
            for spec in specs:
                say(f"preparing {spec.name}")
                if isinstance(spec, cands.FewShotSpec):
                    built.append(
                        await asyncio.to_thread(
                            cands.build_fewshot_candidate, spec, sets.seed_pool, seed
                        )
                    )
                else:
                    built.append(cands.build_llm_candidate(spec))
            return await cands.run_selection(
                built,
                task,
                items,
                human,
                annotation_strategy=a_strategy,
                critique_strategy=c_strategy,
                pairs="all" if pairs == "all" else "recommended",
                concurrency=concurrency,
                buffer=buffer,
                progress=say,
            )
        finally:
            await cands.close_candidates(built)

    try:
        outcome = asyncio.run(go())
    except (cands.CandidateError, ValueError) as exc:
        fail(str(exc), 2)
    report = outcome.report
    if as_json:
        payload = report.to_dict()
        payload["errors"] = {k: v[:MAX_BAD_LINES_SHOWN] for k, v in outcome.errors.items()}
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(render_report(report))
        for name, errs in outcome.errors.items():
            typer.echo(f"warning: {name}: {len(errs)} failed calls, first: {errs[0]}", err=True)
