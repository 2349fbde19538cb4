"""Forecasts for every new bar, inside the stream: the pure per-series state transition
(state_step), its Spark adapter (predictor), the questions' forecasters (forecasters), the
plain-Python MLlib models (scorers), the champions installed for the workers (installed), the
driver's champion mirror (champions), the live skill watch (live_skill) and the Python
workers' set-up (worker). May import finstream.core, features, stores and ingest.
"""
