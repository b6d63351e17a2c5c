"""``act.v1.PipelineStatusService``: stage lag from consumer-group offsets and
per-task progress from the pipeline's topics and the review gateway's queue.

* :mod:`.stages`: per-stage records, committed records and lag from offsets
  (also what ``act status`` prints without a server);
* :mod:`.progress`: the per-task read model (a pure fold and its follower);
* :mod:`.ops`: :class:`~.ops.StatusOps`, which answers ``GetStatus``;
* :mod:`.api`: the thin gRPC servicer and ``add_to_server``;
* :mod:`.settings` and ``__main__``: the small process of its own.
"""
