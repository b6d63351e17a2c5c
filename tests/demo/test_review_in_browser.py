"""``--review-in-browser``: the option, the gateway's web port, and waiting for a person."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from services.demo import progress as watch
from services.demo.__main__ import parse_args
from services.demo.clients import WebLogins
from services.demo.plan import DATASETS, DemoConfig
from services.demo.progress import STAGES, PeopleReviews, Progress
from services.demo.run import make_services, say_web_logins, web_url
from services.review_gateway.replay import ReplayConfig, ReplayReviewer


def test_option_defaults_to_no_review_in_the_browser() -> None:
    config = parse_args([])
    assert config.review_in_browser == 0 and config.remind_every_s == 30.0
    assert parse_args(["--review-in-browser", "5"]).review_in_browser == 5


@pytest.mark.parametrize("value", ["-1", "x"])
def test_option_rejects_what_is_no_count(value: str) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--review-in-browser", value])


def test_gateway_serves_its_web_workspace_on_a_free_local_port(tmp_path: Path) -> None:
    config = DemoConfig(DATASETS["spam"], 10, tmp_path, "x:1", "postgresql://x")
    services = make_services(config, tmp_path, "demo1.", "admin-token")
    env = services["review-gateway"].env
    port = int(env["ACT_GATEWAY_HTTP_PORT"])
    assert port > 0 and env["ACT_GATEWAY_HTTP_HOST"] == "127.0.0.1"
    assert port not in {s.metrics_port for s in services} | {s.grpc_port for s in services}
    assert web_url(services) == f"http://127.0.0.1:{port}"
    assert all("HTTP_PORT" not in k for s in services if s.name != "review-gateway" for k in s.env)


def test_web_logins_are_printed_with_their_pages_but_never_in_a_repr() -> None:
    logins = WebLogins("http://127.0.0.1:8123", "adm-secret", "rev-secret")
    lines: list[str] = []
    say_web_logins(logins, lines.append)
    out = "\n".join(lines)
    assert "http://127.0.0.1:8123/admin" in out and "http://127.0.0.1:8123/review" in out
    assert "http://127.0.0.1:8123/login" in out and "demo-only" in out
    admin_line = next(line for line in lines if "/admin" in line)
    review_line = next(line for line in lines if "/review" in line)
    assert "adm-secret" in admin_line and "demo-admin" in admin_line
    assert "rev-secret" in review_line and "demo-reviewer" in review_line
    assert "secret" not in repr(logins)


def test_progress_line_shows_what_waits_for_a_person() -> None:
    committed = {s: 0 for s in STAGES}
    assert "person" not in Progress(committed, 0, 0).line(10, 1.0)
    assert "waiting for a person 3" in Progress(committed, 0, 0, for_people=3).line(10, 1.0)


# ------------------------------------------------- waiting for a person


class FakeServices:
    """What the progress loop needs of a Supervisor."""

    def __init__(self, tmp_path: Path) -> None:
        self.services = [type("S", (), {"log": tmp_path / "logs" / "gateway.log"})()]

    def check(self) -> None:
        pass


class Stream:
    """A scripted stream: the trainer's count and the gateway's completed reviews."""

    def __init__(self, reviewer: ReplayReviewer, total: int) -> None:
        self.reviewer = reviewer
        self.total = total
        self.trainer = 0
        self.completed = 0

    def read(self, _services: Any, reviews: int) -> Progress:
        return Progress({**{s: 0 for s in STAGES}, "trainer": self.trainer}, 0, reviews)

    async def count(self) -> int:
        return self.completed


def replay(left: int) -> ReplayReviewer:
    reviewer = ReplayReviewer(ReplayConfig(target="unused:1", token="t", leave_for_people=left))
    reviewer.left_for_people.update(f"item-{n}" for n in range(left))
    reviewer.summary.left_for_people = left
    return reviewer


async def watch_stream(stream: Stream, tmp_path: Path, lines: list[str], **kw: Any) -> Progress:
    return await watch.stream_until_trained_on(
        FakeServices(tmp_path),  # type: ignore[arg-type]
        stream.reviewer,
        stream.total,
        lines.append,
        stall_s=0.3,
        every_s=0.02,
        **kw,
    )


async def test_no_stall_while_only_items_for_a_person_are_outstanding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviewer = replay(2)
    stream = Stream(reviewer, total=10)
    monkeypatch.setattr(watch, "read_progress", stream.read)
    # Everything else is through: 8 replayed reviews, the trainer holds 8 items.
    reviewer.summary.submitted = stream.completed = stream.trainer = 8
    people = PeopleReviews("http://127.0.0.1:1/review", stream.count, remind_every_s=0.25)
    lines: list[str] = []
    running = asyncio.create_task(watch_stream(stream, tmp_path, lines, people=people))
    await asyncio.sleep(1.0)  # over three stall timeouts
    assert not running.done()
    reminders = [line for line in lines if "wait for you" in line]
    assert len(reminders) >= 3 and all("http://127.0.0.1:1/review" in r for r in reminders)
    assert "2 review request(s)" in reminders[0]
    stream.completed += 1  # a person reviews one...
    await asyncio.sleep(0.1)
    assert any("waiting for a person 1" in line for line in lines)
    stream.completed += 1  # ...and the other, and the trainer gets both
    stream.trainer = 10
    done = await asyncio.wait_for(running, 5)
    assert done.committed["trainer"] == 10 and done.for_people == 0


async def test_a_stall_beside_the_items_for_a_person_still_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviewer = replay(2)
    stream = Stream(reviewer, total=10)
    monkeypatch.setattr(watch, "read_progress", stream.read)
    # Two items wait for a person, and one more item is stuck somewhere.
    reviewer.summary.submitted = stream.completed = 7
    stream.trainer = 7
    people = PeopleReviews("http://127.0.0.1:1/review", stream.count, remind_every_s=30)
    with pytest.raises(TimeoutError, match="no progress"):
        await asyncio.wait_for(watch_stream(stream, tmp_path, [], people=people), 5)


async def test_without_items_for_a_person_a_stall_times_out_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviewer = replay(0)
    stream = Stream(reviewer, total=10)
    monkeypatch.setattr(watch, "read_progress", stream.read)
    stream.trainer = 9
    lines: list[str] = []
    with pytest.raises(TimeoutError, match="no progress"):
        await asyncio.wait_for(watch_stream(stream, tmp_path, lines), 5)
    assert not any("person" in line for line in lines)
