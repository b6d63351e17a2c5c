"""The trainer: downstream training with the ACT loss (Lin et al., NeurIPS 2025, section 5).

The service (``python -m services.trainer``), by role:

* :mod:`services.trainer.settings` - ``ACT_TRAINER_*`` settings.
* :mod:`services.trainer.factory` - builds the parts once and wires them.
* :mod:`services.trainer.stage` - the Kafka edge: ``act.labels`` into the store.
* :mod:`services.trainer.api` - the gRPC edge, ``act.v1.TrainingService``.
* :mod:`services.trainer.facade` - the operations both edges use.
* :mod:`services.trainer.fitqueue` - fits one at a time in a worker thread;
  :mod:`services.trainer.fitrun` - one fit, resumable, with its events
  (:mod:`services.trainer.events`) and files (:mod:`services.trainer.artifacts`).
* :mod:`services.trainer.fitting` - config defaults, data preparation and the
  lambda selection, no I/O; :mod:`services.trainer.items` decodes stored items.
* :mod:`services.trainer.store` - the SQLite store of labels and fits.

The training library:

* :mod:`services.trainer.loss` - the ACT loss (eq. 8, power tuning of appendix E),
  its variance (eq. 9) and the baselines (human-only, machine-only, ACT-data CE).
* :mod:`services.trainer.sampling` - delta ~ Bernoulli(pi_B(eps)) for offline fits,
  on the sampler service's own rules (:mod:`services.core.sampling`).
* :mod:`services.trainer.networks` - CPU-sized downstream models and a registry.
* :mod:`services.trainer.fit`, :mod:`services.trainer.checkpoint`,
  :mod:`services.trainer.hpo` - the resumable training loop, atomic checkpoints,
  the learning-rate x lambda search of appendix A.3.
* :mod:`services.trainer.bench` - ``trainer_act_loss_overhead``.
"""
