"""The batch-API path: annotation or criticism through OpenAI's Batch API or Anthropic's
Message Batches.

For work that accepts hours of latency at about half the price. A single
driver process per stage kind (:mod:`services.batchapi.driver`,
:mod:`services.batchapi.kinds`: items -> annotations, or annotations ->
critiques) reads its inputs, accepts them into a batch recorded on the
compacted ``batch_state`` topic in the same Kafka transaction as their
offsets, submits the batch, polls it and publishes the results (outputs,
retries, dead letters) in one more transaction. See README, "Batch mode".
"""
