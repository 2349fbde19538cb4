"""The pipeline's shared vocabulary, in plain Python (no pyspark, no server clients): the bar
message and every index mapping (schema), configuration (config), user-facing errors (errors),
logging (logs), the one retry policy (retry), the forecasting questions (questions), the series sets a model is for
(series_sets) and the skill maths they are judged by (skill). Imports nothing from finstream outside core but the
feature names (finstream.features.spec, a leaf module).
"""
