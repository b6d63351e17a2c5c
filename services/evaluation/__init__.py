"""Model selection on real candidates (paper, section 4.3).

:mod:`~services.evaluation.candidates` builds candidate annotators and critics
with the one backend builder (:mod:`services.backends`), runs them on a small
human-labelled set and hands the results to the pure guideline in
:mod:`services.core.selection`. The metrics themselves (accuracy, AQG, ABS,
budgets, random and oracle critics) are pure functions in :mod:`services.core`.
"""
