"""The main job: a real data set through all five services, then the paper's Table 3.

``make demo`` starts the local stack and runs ``python -m services.demo``
(:mod:`services.demo.__main__`); :mod:`services.demo.run` holds the steps.
"""
