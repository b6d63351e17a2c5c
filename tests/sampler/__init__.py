"""Tests of the sampler: rules, streaming pacer, stage over Kafka."""
