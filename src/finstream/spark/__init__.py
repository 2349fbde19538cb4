"""Spark code of the pipeline: what the driver and the executors run. Imports pyspark;
the producer never imports this subpackage."""
