"""MLlib pipelines for the three regressors, hyper-parameters from conf/models.toml."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

from pyspark.ml import Pipeline
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor

from finstream.core.config import conf_dir

REGRESSORS = {"linear": LinearRegression, "random_forest": RandomForestRegressor, "gbt": GBTRegressor}


def load_params(path: Path | None = None) -> dict:
    """The hyper-parameters: conf/models.toml (or `path`), per model kind, and its [grid]."""
    with open(path or conf_dir() / "models.toml", "rb") as f:
        return tomllib.load(f)


def build_pipeline(kind: str, features: tuple[str, ...], label: str, params: dict) -> Pipeline:
    """An unfitted MLlib pipeline: the features assembled (and standardised for the linear
    model), then the regressor.

    Args:
        kind: linear | random_forest | gbt.
        features: the double feature columns, in order.
        label: the column it fits.
        params: the regressor's parameters.

    Returns:
        A Pipeline whose model adds `raw_features` (and `features`) and `prediction` (double).
    """
    stages = [VectorAssembler(inputCols=list(features), outputCol="raw_features", handleInvalid="error")]
    if kind == "linear":
        # Scaling matters for the regularised linear model only; trees split on ranks.
        stages.append(StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True))
        features_col = "features"
    else:
        features_col = "raw_features"
    stages.append(REGRESSORS[kind](featuresCol=features_col, labelCol=label, predictionCol="prediction", **params))
    return Pipeline(stages=stages)


def grid(kind: str, config: dict) -> list[dict]:
    """Every combination of the model's grid, over its default parameters."""
    candidates = config.get("grid", {}).get(kind, {})
    names = sorted(candidates)
    return [{**config[kind], **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(candidates[n] for n in names))] or [config[kind]]
