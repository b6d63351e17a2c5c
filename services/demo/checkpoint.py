"""The trainer service's model, loaded from its checkpoint and scored on test items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from act.v1 import training_pb2


def service_model_accuracy(checkpoint_uri: str, raw: Any, labels: np.ndarray) -> float:
    """Test accuracy of the model the trainer service wrote (its final ``model.pt``)."""
    # Imported here: torch is slow to import and only the last step needs it.
    import torch

    from services.trainer.features import prepare_inputs
    from services.trainer.fit import predict
    from services.trainer.networks import build_network, network_spec

    path = Path(checkpoint_uri.removeprefix("file://"))
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = training_pb2.FitConfig.FromString(payload["config"])
    params = {k: v for k, v in config.params.items() if k != "num_classes"}
    spec = network_spec(str(payload["model_name"]))
    num_classes = int(config.params.get("num_classes", "0")) or int(labels.max()) + 1
    model = build_network(spec.name, num_classes, params)
    model.load_state_dict(payload["model"])
    predicted = predict(model, prepare_inputs(spec.input_kind, raw)).numpy()
    return float((predicted == labels).mean())
