"""Thin adapters from each platform's Kafka-triggered event to :mod:`stratx.functions.inbound`.

* :mod:`.aws_lambda`: AWS Lambda, self-managed Kafka (Redpanda) and Amazon MSK event source mappings
* :mod:`.cloudevents_http`: CloudEvents over HTTP (Knative KafkaSource, Google Cloud Run functions)
* :mod:`.azure_functions`: Azure Functions Python v2, Kafka trigger (cardinality many)

Every adapter only decodes its envelope into :class:`~stratx.functions.inbound.InboundRecord` and
hands the batch to :func:`.runtime.process_batch` (idempotency store + output sink).
"""
