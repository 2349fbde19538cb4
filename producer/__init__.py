"""The producer: market bars -> Kafka. Stays light: never imports pyspark."""
