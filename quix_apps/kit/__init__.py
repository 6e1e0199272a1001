"""The shared streaming kit of the Quix apps: broker, topic admin, Kafka I/O, restart filters, metrics, Feast client, HTTP clients, pipeline supervisor."""
