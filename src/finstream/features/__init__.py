"""The features a model sees, specified once (spec: names and window lengths) and implemented
twice side by side: Spark columns for training (columns, imports pyspark) and plain Python for
the stream's state step (scalar), equal bit for bit (tests/unit/test_feature_parity.py).
May import finstream.core.
"""
