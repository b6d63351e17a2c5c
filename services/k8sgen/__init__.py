"""Kubernetes tooling of ACT stream: generated manifests, rendering, validation.

* :mod:`services.k8sgen.pipeline` - the stages (consumer groups, the topics each
  reads and writes), the one table the generated Kafka resources come from;
* :mod:`services.k8sgen.kafka` - ``KafkaTopic`` and ``KafkaUser`` resources
  generated from the topic specification (``protos/act/v1/topics.yaml``);
* :mod:`services.k8sgen.render` - ``kustomize build`` of the overlays;
* :mod:`services.k8sgen.schemas` - offline validation against the Kubernetes
  schemas (the ``kubernetes-validate`` package) and the vendored CRD schemas
  (``k8s/schemas/``);
* :mod:`services.k8sgen.netpol` - an evaluator of NetworkPolicies: may pod A
  open a connection to pod B on port P?

``python -m services.k8sgen --help`` lists the commands. None of this runs in
a service; it is the build and CI side of ``k8s/``.
"""
