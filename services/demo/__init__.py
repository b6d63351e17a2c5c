"""The main job: a real data set through all five services, then the paper's Table 3.

``make demo`` starts the local stack and runs ``python -m services.demo``
(:mod:`services.demo.__main__`); :mod:`services.demo.run` holds the steps,
:mod:`services.demo.plan` what they stream and at which budget,
:mod:`services.demo.progress` how the stream is watched,
:mod:`services.demo.clients` the gRPC calls and :mod:`services.demo.checkpoint`
the trainer's model. The service processes run under
:mod:`services.devkit.processes`.
"""
