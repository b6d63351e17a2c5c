"""The paper's downstream evaluation (Table 3, Figures 11-12) on Fashion-MNIST and SpamAssassin.

* :mod:`services.experiments.table` - ``table_result``: human-only, machine-only,
  ACT-data CE and the three ACT losses, mean +- std over seeds, gaps, budget;
  its rows and settings in :mod:`services.experiments.methods`, the training
  jobs in :mod:`services.experiments.fitting`, the result in
  :mod:`services.experiments.results`.
* :mod:`services.experiments.data` - splits; :mod:`services.experiments.annotations`
  - machine labels and eps from the few-shot pair; :mod:`services.experiments.pipeline`
  - the same inputs from what streamed through the services.
* :mod:`services.experiments.report` - ``write_report``: a table as Markdown, JSON
  and PNG plots.
* ``python -m services.experiments`` - the CLI; :mod:`services.experiments.bench`
  - ``make bench``'s table metrics.
"""
