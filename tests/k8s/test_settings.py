"""Every setting the manifests pass to a service is one the service reads.

The ConfigMaps name environment variables; a typo or a renamed setting would
be ignored silently (the settings classes ignore unknown variables), so each
``ACT_<SERVICE>_*`` key must be a field of that service's settings class and
each ``ACT_KAFKA_*`` key a field of ``KafkaSettings``. Services whose settings
class does not exist yet are skipped.
"""

from __future__ import annotations

import importlib

import pytest

from services.backends.settings import ComposedSettings
from services.k8sgen import render
from services.runtime.config import KafkaSettings
from tests.k8s.conftest import find

SETTINGS = {
    "annotator": ("services.annotator.settings", "AnnotatorSettings", "ACT_ANNOTATOR_"),
    "criticizer": ("services.criticizer.settings", "CriticizerSettings", "ACT_CRITICIZER_"),
    "sampler": ("services.sampler.service", "SamplerSettings", "ACT_SAMPLER_"),
    "review-gateway": ("services.review_gateway.settings", "GatewaySettings", "ACT_GATEWAY_"),
    "trainer": ("services.trainer.settings", "TrainerSettings", "ACT_TRAINER_"),
}


def _settings_fields(module: str, cls: str, prefix: str) -> set[str]:
    """The setting names a service reads after its prefix (a composed class: its parts' too)."""
    try:
        settings = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        pytest.skip(f"{module}.{cls} does not exist yet")
    if issubclass(settings, ComposedSettings):
        return {name.removeprefix(prefix).lower() for name in settings.env_names()}
    return set(settings.model_fields)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_config_keys_are_settings_of_the_service(overlays, service):
    module, cls, prefix = SETTINGS[service]
    fields = _settings_fields(module, cls, prefix)
    for overlay in render.OVERLAYS:
        for cm in find(overlays[overlay], "ConfigMap", f"{service}-config"):
            for key in cm["data"]:
                if key.startswith(prefix):
                    field = key.removeprefix(prefix).lower()
                    assert field in fields, f"{overlay}: {key} is no setting of {cls}"


def test_kafka_keys_are_kafka_settings(overlays):
    fields = set(KafkaSettings.model_fields)
    for overlay in render.OVERLAYS:
        for cm in find(overlays[overlay], "ConfigMap"):
            for key in cm["data"]:
                if key.startswith("ACT_KAFKA_"):
                    assert key.removeprefix("ACT_KAFKA_").lower() in fields, (overlay, key)
