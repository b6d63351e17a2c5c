"""Review gateway: the human side of ACT, exactly once from review request to label.

Components (all in one process, ``python -m services.review_gateway``):

* ``stage.ReviewRequestStage`` — consumes ``act.review.requests`` under the
  runtime's exactly-once StageRunner and inserts each request into the durable
  queue (insert-or-ignore on ``request_id`` and ``(task_id, item_id)``); it
  produces nothing, so the input offset commits only after the insert did.
  ``runtime.tasks.TaskRegistry`` follows ``act.tasks`` for label sets.
* ``api.ReviewServicer`` — the gRPC ``act.v1.ReviewService`` (lease,
  submit, extend, release, skip, statistics, reviewer management) with bearer
  tokens stored as SHA-256, precise status codes and a mandatory deadline.
* ``store.ReviewStore`` — every state change is one SQL transaction that
  also writes the audit log; a submission writes the review, completes the
  queue entry and puts the FinalLabel into the outbox atomically. One module
  per concern (queue and leases, reviews, reviewers, statistics, outbox).
* ``relay.OutboxRelay`` — publishes outbox rows to ``act.labels`` with a
  transactional producer and a batch marker committed inside the same Kafka
  transaction, so a crash at any point neither loses nor (single fault)
  duplicates a label. See that module for the full argument.
* a lease reaper (``ReviewStore.expire_leases``) that returns abandoned items
  to the queue: an item is never dropped, and never served again once labelled.
* ``app.Gateway`` — the process wiring: builds every component once, starts
  and stops them together (``__main__``, the tests and the benchmark use it).
* ``replay`` — a gRPC client that plays reviewers from held labels.
* ``bench.bench_gateway_reviews_per_s`` — lease + submit throughput.

Storage: SQLAlchemy Core (asyncio) over aiosqlite (embedded default, one
replica) or psycopg 3 (PostgreSQL, any number of replicas), schema managed by
Alembic (``migrations/``, run at start under an advisory lock or with
``python -m services.review_gateway migrate``). Lease and Submit have one
implementation for both back ends (``store.atomic``); on PostgreSQL each of
their writes is a single data-modifying-CTE statement on a raw psycopg
connection (``pgpool``): one round trip per write and a third of the CPU of
the same statement through SQLAlchemy.

Label sets: a ReviewRequest carries the item, annotation, critique and decision
but no Task, so the gateway learns ``Task.labels`` from ``act.tasks`` and only
serves items whose task it knows (others wait, they are never dropped). The
contract change that would remove this dependency is a ``Task task = 5`` field
on ``ReviewRequest`` filled by the sampler; ``labels.embedded_task`` already
reads it if present.
"""
