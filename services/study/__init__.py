"""The paper's strategy study (section 4, Figures 2-4) on the local models: ``make study``.

Modules by role: :mod:`~services.study.plan` (the grid and the sizing from
measured speeds, pure), :mod:`~services.study.servers` (one
deploy/llm-server.sh server per profile), :mod:`~services.study.run` (phases
of calls through the existing LLM annotator and critic),
:mod:`~services.study.records` (the per-call JSONL under ``.local/study/``),
:mod:`~services.study.driver` (calibration, sizing, phases),
:mod:`~services.study.metrics` and :mod:`~services.study.insights` (tables
and verdicts with bootstrap intervals), :mod:`~services.study.figures` and
:mod:`~services.study.report` (``docs/study/``).
"""
