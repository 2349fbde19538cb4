"""Kafka records -> validated bars and dead letters -> Elasticsearch: what a valid message is
in plain Python (messages, also used by the producer) and in Spark (validation, spark_types),
the Kafka source's options (source), ES-Hadoop writes (es_sink) and the index-bars
micro-batch (indexing). May import finstream.core, features and stores.
"""
