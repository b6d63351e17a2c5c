"""Choosing and building the model backends of the annotator and the criticizer.

* :mod:`~services.backends.settings`: ``BackendSettings`` (the ``*_BACKEND``
  choice) and ``ModelStageSettings``, the base of the annotator's and
  criticizer's settings: parts (``stage``, ``llm``, ``backend``) that share
  the service's env prefix (``ComposedSettings`` does the sharing).
* :mod:`~services.backends.build`: the one backend builder. Given a backend
  choice and LLM options, LLM options alone, or a few-shot spec and a labelled
  pool, it returns an annotator and a critic over one model and the client to
  close. The services (``build_backend_stage``), their benchmarks and
  ``act select-models`` (:mod:`services.evaluation.candidates`) all use it.

Dependency direction (one way; ``lint-imports`` keeps it acyclic)::

    services.annotator, services.criticizer   (stage, settings, __main__)
    services.evaluation, services.cli          (act select-models)
                    |
                    v
             services.backends                 (settings, build)
                    |
          +---------+----------+
          v                    v
    services.llm          services.fewshot      (the backend implementations:
    (clients; LLM         (few-shot models;      services.llm.annotator,
     annotator and         routers per           services.llm.critic,
     critic)               ModelRef)             services.fewshot.routing)
          |                    |
          +---------+----------+
                    v
    services.backend_api, services.runtime         (protocols, BackendStage, retry, tasks)

Nothing below imports ``services.backends``, and the stage packages import no
backend implementation: a new backend is a module under ``services.llm`` or
``services.fewshot`` plus a branch here.
"""
