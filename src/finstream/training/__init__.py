"""The Kafka log replayed -> models fitted, evaluated without leaks, exported to the scorers the
stream serves and registered in MLflow: replay, regressors (MLlib pipelines), selection (fit,
choose, evaluate), evaluation (calendar cut, walk-forward folds), results (the typed run
report), export (the parity gate), tracking (MLflow logging and the alias policy), reporting
(tables, plots, documents) and steps (the training job's named steps).
May import finstream.core, features, stores, ingest and serving (the scorers it exports to).
"""
