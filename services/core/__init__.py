"""The statistics of ACT as small pure functions: no I/O, no service imports.

* :mod:`~services.core.sampling` - the three sampling rules ``pi_B(eps)``, the
  budget, the exploration floor and the reproducible Bernoulli draws.
* :mod:`~services.core.batch` - exact batch sampling with ``sum delta <= B``.
* :mod:`~services.core.streaming` - the online eps sketch and budget pacer.
* :mod:`~services.core.metrics` - accuracy, AQG, ABS, ideal and recommended budgets.
* :mod:`~services.core.baselines` - random and oracle critics.
* :mod:`~services.core.selection` - the model-selection guideline.

Everything here imports only the standard library, numpy and the ``act.v1``
contracts; ``lint-imports`` (pyproject ``[tool.importlinter]``) enforces it.
The torch code (the ACT loss, the models) lives in :mod:`services.trainer`.
"""
