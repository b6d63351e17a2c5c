"""Tests of services.backends: the settings parts and the one backend builder."""
