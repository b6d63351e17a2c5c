"""The paper's downstream evaluation (Table 3, Figures 11-12) on Fashion-MNIST and SpamAssassin.

* :mod:`services.experiments.table` - ``run_table``: human-only, machine-only,
  ACT-data CE and the three ACT losses, mean +- std over seeds, gaps, budget.
* :mod:`services.experiments.data` - splits; :mod:`services.experiments.annotations`
  - machine labels and eps from the few-shot pair; :mod:`services.experiments.pipeline`
  - the same inputs from what streamed through the services.
* :mod:`services.experiments.report` - Markdown table, JSON and PNG plots.
* ``python -m services.experiments`` - the CLI; :mod:`services.experiments.bench`
  - ``make bench``'s table metrics.
"""
