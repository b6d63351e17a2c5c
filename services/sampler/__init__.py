"""Budget-aware sampling (ACT paper, section 2): which items humans review.

* the rules, exact batch sampling and the online eps sketch and pacer are pure
  code in :mod:`services.core` (``sampling``, ``batch``, ``streaming``), and so
  is a task's resolved :class:`~services.core.params.SamplingParams` (``params``).
* :mod:`services.sampler.settings` - settings, which give every task its default parameters.
* :mod:`services.sampler.decisions` - a decision as a ReviewRequest or FinalLabel.
* :mod:`services.sampler.ordering` - per-partition offset order.
* :mod:`services.sampler.partition` - per-partition state and its changelog writes.
* :mod:`services.sampler.batches` - batch mode: open and decided batches.
* :mod:`services.sampler.service` - the ``sampler`` stage on the runtime.
* :mod:`services.sampler.bench` - ``sampler_items_per_s`` for ``make bench``.
"""
