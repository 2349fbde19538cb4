"""finstream: market bars from Kafka to Elasticsearch, with forecasts for every new bar.

The packages, each with one role (a package imports only those listed before it; core also
reads the feature names of features.spec, a leaf module):

    core       pure Python: the bar schema and index mappings, configuration, errors, retries,
               the forecasting questions (declared once) and the skill maths
    features   the feature spec, and its two implementations: Spark columns (training) and
               plain Python (the stream's state step), equal bit for bit
    stores     clients of the servers: Kafka topics, Elasticsearch, the MLflow registry, and the
               stream's checkpoints read as files
    ingest     Kafka records -> validated bars and dead letters -> Elasticsearch (Spark)
    serving    the per-series state step, forecasters, scorers, installed champions, live skill
    training   the replayed log -> fitted, evaluated, exported and registered models (Spark)
    ops        monitoring of the stream, and development-only generators (Kibana dashboards)

`python -m finstream.models` (models.py) is the registry's command line. The package is
shipped to Spark executors with --py-files (spark-submit.sh), development-only modules left
out; the producer imports only core, stores and ingest.messages, none of which imports pyspark.
"""

__version__ = "0.1.0"
