"""``make bench``: one JSON object per metric, ``{"metric", "value", "unit"}``.

Starts what the suites need (a Kafka broker, PostgreSQL, the SmolLM2 server,
and for the ``qwen`` suite a Qwen2.5-Coder-1.5B server whose verified weights
are kept in ``.local/models``: the first run downloads about 1.1 GB) on free
ports, or uses ``ACT_BENCH_KAFKA_BOOTSTRAP`` / ``ACT_BENCH_POSTGRES_DSN``
/ ``ACT_BENCH_LLM_BASE_URL``. ``python -m bench SUITE ...`` runs a subset.
A suite that fails prints ``{"metric": "<suite>_error", ...}`` on stderr and
the run exits non-zero after the other suites.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.devkit.stack import REPO_ROOT, LocalBroker, LocalPostgres, free_port
from services.runtime.logging import configure_logging

Result = list[tuple[str, float, str]]


class BenchEnv:
    """Infrastructure for the suites, started on first use and stopped at the end."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="act-bench-", dir="/tmp"))
        self.tmp.chmod(0o755)
        self._broker: LocalBroker | None = None
        self._postgres: LocalPostgres | None = None
        # Local model servers by profile: (state dir, port).
        self._llms: dict[str, tuple[Path, int]] = {}

    async def bootstrap(self) -> str:
        if env := os.environ.get("ACT_BENCH_KAFKA_BOOTSTRAP"):
            return env
        if self._broker is None:
            self._broker = LocalBroker(
                state_dir=self.tmp / "kafka", port=free_port(), controller_port=free_port()
            )
            await asyncio.to_thread(self._broker.start)
        return self._broker.bootstrap

    async def postgres(self) -> str:
        if env := os.environ.get("ACT_BENCH_POSTGRES_DSN"):
            return env
        if self._postgres is None:
            state = self.tmp / "pg"
            state.mkdir(mode=0o755)
            self._postgres = LocalPostgres(state_dir=state, port=free_port())
            await asyncio.to_thread(self._postgres.start)
        return self._postgres.dsn

    async def llm_base_url(self, profile: str = "smollm2") -> str:
        """A local model server of ``profile`` (``deploy/llm-server.sh``), started once."""
        if profile == "smollm2" and (env := os.environ.get("ACT_BENCH_LLM_BASE_URL")):
            return env
        if profile not in self._llms:
            state, port = self.tmp / f"llm-{profile}", free_port()
            if profile != "smollm2":
                # Fetch and verify the weights first: the first run downloads them.
                await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "services.llm.weights", "ensure",
                     "--profile", profile, "--dir", str(REPO_ROOT / ".local" / "models")],
                    check=True, timeout=3600, cwd=REPO_ROOT,
                )  # fmt: skip
            await asyncio.to_thread(self._llm("up", state, profile, port))
            self._llms[profile] = (state, port)
        return f"http://127.0.0.1:{self._llms[profile][1]}/v1"

    def _llm(self, command: str, state: Path, profile: str, port: int) -> Callable[[], None]:
        def run() -> None:
            env = {
                **os.environ,
                "ACT_STACK_DIR": str(state),
                "ACT_LLM_PORT": str(port),
                "ACT_LLM_PROFILE": profile,
                "PYTHON": sys.executable,
            }
            subprocess.run(
                ["bash", str(REPO_ROOT / "deploy" / "llm-server.sh"), command],
                env=env, check=True, capture_output=True, timeout=300,
            )  # fmt: skip

        return run

    async def close(self) -> None:
        for profile, (state, port) in self._llms.items():
            # The script recognises its server by the port: "down" needs the same one.
            await asyncio.to_thread(self._llm("down", state, profile, port))
        if self._broker is not None:
            await asyncio.to_thread(self._broker.stop)
        if self._postgres is not None:
            await asyncio.to_thread(self._postgres.stop)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def runtime_suite(env: BenchEnv) -> Result:
    from bench.runtime import bench_runtime

    return await bench_runtime(await env.bootstrap())


async def sampler_suite(env: BenchEnv) -> Result:
    from services.sampler.bench import bench_sampler_items_per_s

    return [
        ("sampler_items_per_s", await bench_sampler_items_per_s(await env.bootstrap()), "items/s")
    ]


async def gateway_suite(env: BenchEnv) -> Result:
    from services.review_gateway.bench import bench_gateway_reviews_per_s

    value = await bench_gateway_reviews_per_s(await env.postgres())
    return [("gateway_reviews_per_s", value, "reviews/s")]


async def ingest_suite(env: BenchEnv) -> Result:
    from services.ingest.bench import bench_ingest_items_per_s

    value = await bench_ingest_items_per_s(await env.bootstrap(), await env.postgres())
    return [("ingest_items_per_s", value, "items/s")]


async def injection_suite(env: BenchEnv) -> Result:
    """Label flips under prompt-injection attacks (services.llm.injection), on SmolLM2."""
    from services.llm.injection_bench import measure_injection

    metrics = await measure_injection(await env.llm_base_url(), "smollm2")
    counts = ("injection_pairs", "injection_parse_failures")
    return [
        (name, value, "count" if name in counts else "ratio") for name, value in metrics.items()
    ]


async def review_web_suite(env: BenchEnv) -> Result:
    from services.review_gateway.bench_web import bench_review_web

    result = await bench_review_web(await env.postgres())
    return [
        ("review_web_next_item_p95_ms", result.next_item_p95_ms, "ms"),
        ("review_web_paced_reviews_per_s", result.paced_reviews_per_s, "reviews/s"),
        ("review_web_saturated_p95_ms", result.saturated_p95_ms, "ms"),
        ("review_web_reviews_per_s", result.reviews_per_s, "reviews/s"),
    ]


async def llm_stages_suite(env: BenchEnv) -> Result:
    from services.annotator.bench import bench_annotator_items_per_s
    from services.criticizer.bench import bench_criticizer_items_per_s

    bootstrap = await env.bootstrap()
    return [
        ("annotator_items_per_s", await bench_annotator_items_per_s(bootstrap), "items/s"),
        ("criticizer_items_per_s", await bench_criticizer_items_per_s(bootstrap), "items/s"),
    ]


async def batch_path_suite(env: BenchEnv) -> Result:
    from services.batchapi.bench import bench_batch_path

    rate, cost = await bench_batch_path(await env.bootstrap())
    return [
        ("batch_path_items_per_s", rate, "items/s"),
        ("batch_path_cost_per_item_usd", cost, "USD"),
    ]


async def smollm2_suite(env: BenchEnv) -> Result:
    from services.criticizer.bench import bench_smollm2_critic_items_per_s

    value = await bench_smollm2_critic_items_per_s(await env.bootstrap(), await env.llm_base_url())
    return [("smollm2_critic_items_per_s", value, "items/s")]


async def qwen_suite(env: BenchEnv) -> Result:
    from services.annotator.bench import bench_local_annotator_items_per_s
    from services.criticizer.bench import bench_local_critic_items_per_s

    bootstrap, base_url = await env.bootstrap(), await env.llm_base_url("qwen-1.5b")
    annotate = await bench_local_annotator_items_per_s(bootstrap, base_url, "qwen-1.5b")
    criticize = await bench_local_critic_items_per_s(bootstrap, base_url, "qwen-1.5b")
    return [
        ("qwen_annotator_items_per_s", annotate, "items/s"),
        ("qwen_critic_logit_items_per_s", criticize, "items/s"),
    ]


async def fewshot_suite(env: BenchEnv) -> Result:
    from services.fewshot.bench import bench_fewshot

    results: Result = []
    for dataset, n_eval in (("fashion", 2000), ("spam", 1000)):
        metrics = await asyncio.to_thread(bench_fewshot, dataset, n_eval)
        results.extend((name, value, "ratio") for name, value in metrics.items())
    return results


async def trainer_suite(env: BenchEnv) -> Result:
    from services.trainer.bench import bench_act_loss_overhead

    ratio = await asyncio.to_thread(bench_act_loss_overhead)
    return [("trainer_act_loss_overhead", ratio, "ratio")]


async def tables_suite(env: BenchEnv) -> Result:
    from services.experiments.bench import bench_tables

    metrics = await asyncio.to_thread(bench_tables)

    def unit(name: str) -> str:
        if name.endswith("_seconds"):
            return "s"
        if name.endswith(("_budget", "_annotator_accuracy")):
            return "%"
        return "points"

    return [(name, value, unit(name)) for name, value in metrics.items()]


SUITES: dict[str, Callable[[BenchEnv], Awaitable[Result]]] = {
    "runtime": runtime_suite,
    "sampler": sampler_suite,
    "gateway": gateway_suite,
    "ingest": ingest_suite,
    "review_web": review_web_suite,
    "llm_stages": llm_stages_suite,
    "batch_path": batch_path_suite,
    "smollm2": smollm2_suite,
    "injection": injection_suite,
    "qwen": qwen_suite,
    "fewshot": fewshot_suite,
    "trainer": trainer_suite,
    "tables": tables_suite,
}


def emit(metric: str, value: float, unit: str) -> None:
    """Print one metric as a JSON line."""
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit}), flush=True)


async def main(selected: list[str]) -> int:
    configure_logging("bench", "WARNING")
    unknown = [s for s in selected if s not in SUITES]
    if unknown:
        print(f"unknown suites {unknown}; known: {list(SUITES)}", file=sys.stderr)
        return 2
    env = BenchEnv()
    failed = 0
    try:
        for name in selected or list(SUITES):
            try:
                for metric, value, unit in await SUITES[name](env):
                    emit(metric, value, unit)
            except Exception:  # one broken suite must not hide the others' numbers
                failed += 1
                traceback.print_exc()
                print(json.dumps({"metric": f"{name}_error", "value": 1, "unit": "failed"}),
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await env.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
