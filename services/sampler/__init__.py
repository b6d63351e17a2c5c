"""Budget-aware sampling (ACT paper, section 2): which items humans review.

* :mod:`services.sampler.rules` - the three rules and exact batch sampling (pure).
* :mod:`services.sampler.streaming` - online eps sketch and budget pacer (pure).
* :mod:`services.sampler.ordering` - per-partition offset order and takeover detection.
* :mod:`services.sampler.state_store` - reading act.sampler.state and committed offsets.
* :mod:`services.sampler.service` - the ``sampler`` stage on the runtime.
* :mod:`services.sampler.bench` - ``sampler_items_per_s`` for ``make bench``.
"""
