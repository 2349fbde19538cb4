"""A fitted MLlib pipeline as the plain-Python scorer the stream serves (finstream.serving.scorers),
and the check that both give the same floats on the rows the model was evaluated on."""

from __future__ import annotations

from pathlib import Path

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from finstream.serving.scorers import scorer_from_spec

# Rows of the holdout scored both ways before a model is published.
PARITY_ROWS = 2000


class ScorerMismatch(RuntimeError):
    """The exported scorer does not reproduce MLlib's predictions: the model is not published."""


def _trees(spark: SparkSession, stage_dir: Path) -> list[dict]:
    """The trees of a saved ensemble, from its own data files (treeID, nodeData)."""
    nodes = spark.read.parquet(str(stage_dir / "data")).select(
        "treeID", "nodeData.id", "nodeData.prediction", "nodeData.leftChild", "nodeData.rightChild",
        F.col("nodeData.split.featureIndex").alias("feature"),
        F.col("nodeData.split.leftCategoriesOrThreshold").alias("threshold"),
        F.col("nodeData.split.numCategories").alias("categories"),
    ).collect()
    trees: dict[int, dict[int, object]] = {}
    for node in nodes:
        if node.leftChild >= 0 and node.categories != -1:
            raise ValueError("categorical splits are not supported by the stream's scorer")
        trees.setdefault(node.treeID, {})[node.id] = node
    result = []
    for tree_id in sorted(trees):
        by_id = trees[tree_id]
        size = max(by_id) + 1
        internal = [by_id[i].leftChild >= 0 for i in range(size)]
        result.append({
            "feature": [by_id[i].feature if internal[i] else -1 for i in range(size)],
            "threshold": [by_id[i].threshold[0] if internal[i] else 0.0 for i in range(size)],
            "left": [by_id[i].leftChild for i in range(size)],
            "right": [by_id[i].rightChild for i in range(size)],
            "value": [by_id[i].prediction for i in range(size)],
        })
    return result


def scoring_spec(model: PipelineModel, kind: str, features: tuple[str, ...], saved_at: Path) -> dict:
    """The JSON scorer of a pipeline (VectorAssembler [+ StandardScaler] + regressor) saved at
    `saved_at` (its tree stages are read back from their data files)."""
    spec: dict = {"kind": kind, "features": list(features)}
    regressor = model.stages[-1]
    if kind == "linear":
        scaler = model.stages[1]
        spec.update(mean=scaler.mean.toArray().tolist(),
                    scale=[0.0 if s == 0 else 1.0 / s for s in scaler.std.toArray().tolist()],
                    coefficients=regressor.coefficients.toArray().tolist(), intercept=regressor.intercept)
        return spec
    spark = SparkSession.getActiveSession()
    stage_dir = next((saved_at / "stages").glob(f"{len(model.stages) - 1}_*"))
    spec["trees"] = _trees(spark, stage_dir)
    if kind == "gbt":
        spec["weights"] = list(regressor.treeWeights)
    return spec


def check_parity(spec: dict, scored: DataFrame, features: tuple[str, ...], rows: int = PARITY_ROWS) -> int:
    """Scores up to `rows` rows of `scored` (MLlib's output: features and `prediction`) with
    the exported scorer; raises ScorerMismatch unless every prediction is the same float."""
    scorer = scorer_from_spec(spec)
    checked = 0
    for row in scored.select(*features, "prediction").limit(rows).collect():
        mine = scorer.predict([row[f] for f in features])
        if mine != row.prediction:
            raise ScorerMismatch(f"the exported {spec['kind']} scorer gives {mine!r} where MLlib gives "
                                 f"{row.prediction!r} (features {[row[f] for f in features]})")
        checked += 1
    return checked
