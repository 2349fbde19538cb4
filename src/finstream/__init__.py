"""Shared code of the finstream pipeline: the bar schema, configuration, validation and
features. Shipped to Spark executors with --py-files; imports neither the producer nor
the jobs, and nothing in its top-level modules imports pyspark (the producer stays light:
Spark code lives in finstream.spark)."""

__version__ = "0.1.0"
