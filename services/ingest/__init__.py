"""The ingest service: ``act.v1.IngestService`` over gRPC, in its own process.

Producers define tasks (CreateTask/GetTask/ListTasks over the compacted
``act.tasks`` topic) and stream items (Ingest). Each item is validated at the
edge against its task and the service's limits (:mod:`.validation`), sent to
``act.items`` by an idempotent producer keyed by item id and recorded in a
per-task ledger of accepted ids (:mod:`.ledger`) once Kafka acknowledged it,
so a retried stream neither loses nor duplicates items. Callers authenticate
with the review gateway's bearer tokens and need the ``producer`` role.

Modules: ``settings``, ``validation`` (pure), ``ledger``, ``ops`` (the rules),
``api`` (the gRPC edge), ``app`` (wiring), ``__main__`` (the process),
``bench``.
"""
