"""Clients of the servers the parts meet through: Kafka topics (topics), Elasticsearch
(elastic), the MLflow tracking store and registry (registry), and the stream job's checkpoints
read as files (checkpoints). No pyspark. May import finstream.core.
"""
