"""The study's own model servers log prompt-cache reuse, and no prompt text."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from services.study.records import prefix_hits
from services.study.servers import ServerPool


@pytest.mark.slow
def test_a_study_server_logs_prompt_cache_reuse_and_no_prompt_text(tmp_path: Path) -> None:
    from tests.llm.smollm2 import missing_packages

    missing = missing_packages()
    if missing:
        pytest.skip(f"local model path not installed: {', '.join(missing)}")
    marker = "zebra-cobalt-7781"  # stands for item content
    instructions = "You label e-mails as spam or ham. Answer with one word. " * 12
    with ServerPool(tmp_path) as pool:
        url = pool.url("smollm2")
        offset = pool.log_size("smollm2")
        for n in range(2):
            body = {
                "model": "smollm2",
                "messages": [
                    {"role": "system", "content": instructions},
                    {"role": "user", "content": f"E-mail {n}: {marker}"},
                ],
                "max_tokens": 2,
                "temperature": 0,
            }
            request = urllib.request.Request(
                f"{url}/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=120) as reply:
                assert reply.status == 200
        log = pool.log_since("smollm2", offset)
        whole = (pool.log_path("smollm2") or Path("/nonexistent")).read_text(errors="replace")
    assert log is not None
    # The second request reuses the shared instructions from the KV cache.
    hits = prefix_hits(log)
    assert hits is not None and hits > 100
    assert marker not in whole and "label e-mails" not in whole
