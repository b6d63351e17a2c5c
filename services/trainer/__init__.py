"""The trainer: downstream training with the ACT loss (Lin et al., NeurIPS 2025, section 5).

* :mod:`services.trainer.loss` - the ACT loss (eq. 8, power tuning of appendix E),
  its variance (eq. 9) and the baselines (human-only, machine-only, ACT-data CE).
* :mod:`services.trainer.sampling` - delta ~ Bernoulli(pi_B(eps)) for offline fits,
  on the sampler service's own rules (:mod:`services.sampler.rules`).
* :mod:`services.trainer.models` - CPU-sized downstream models and a registry.
* :mod:`services.trainer.fit`, :mod:`services.trainer.checkpoint`,
  :mod:`services.trainer.hpo` - the resumable training loop, atomic checkpoints,
  the learning-rate x lambda search of appendix A.3.
* :mod:`services.trainer.service` - the ``trainer`` stage, fit manager and gRPC API
  (``python -m services.trainer``); :mod:`services.trainer.store` its SQLite state.
* :mod:`services.trainer.bench` - ``trainer_act_loss_overhead``.
"""
