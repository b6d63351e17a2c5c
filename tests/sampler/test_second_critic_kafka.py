"""The feedback loop's link over a real broker: the trainer publishes, the sampler follows."""

from __future__ import annotations

import asyncio
import uuid

from act.v1 import training_pb2

from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.sampler.second_critic import SecondCritic, model_book
from services.trainer.events import KafkaEventSink

from .test_second_critic import TASK, _image_critique, _published


async def _until(condition: object, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_the_sampler_follows_the_latest_published_model(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}."
    )
    await ensure_topics(kafka, replication=1, partitions=1, topic_ids=["models"])
    sink = KafkaEventSink(kafka)
    await sink.start()
    book = model_book(kafka)
    try:
        first = _published()
        # The fit queue publishes from its worker thread and waits for the ack.
        await asyncio.to_thread(sink.publish_model, first)
        await book.start()  # reads the topic to its end before the stage runs
        current = book.current(TASK)
        assert current is not None and current.fit_id == "fit-7"
        assert current.weights == first.weights  # the weights travel whole (~0.1 MiB)
        second_critic = SecondCritic(book)
        opinion = second_critic.opinion(TASK, _image_critique("z", 0.3, label=3), 0.3)
        assert opinion is not None and opinion.fit_id == "fit-7"

        newer = training_pb2.PublishedModel()
        newer.CopyFrom(first)
        newer.fit_id = "fit-8"
        await asyncio.to_thread(sink.publish_model, newer)
        await _until(lambda: book.current(TASK).fit_id == "fit-8")  # type: ignore[union-attr]
        opinion = second_critic.opinion(TASK, _image_critique("y", 0.3, label=3), 0.3)
        assert opinion is not None and opinion.fit_id == "fit-8"  # the next item, the new model
    finally:
        await book.stop()
        await sink.stop()
