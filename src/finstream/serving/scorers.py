"""The trained regressors in plain Python, for scoring one bar at a time inside the stream's
per-series state step (no Spark job, no JVM round trip).

They reproduce MLlib's arithmetic operation by operation, so that a bar scored here gets the
very same float as MLlib's `transform`:
- the linear model scales with (x - mean) * (1 / std) (`StandardScalerModel`) and takes the
  dot product with four partial sums of fused multiply-adds (the JVM BLAS MLlib calls);
- a tree goes left when feature <= threshold; a forest averages its trees in order; a
  boosted ensemble weights them with the same four-way dot product.
tests/unit/test_feature_parity.py checks the equality against Spark, and the trainer checks it
on the holdout of every model it publishes (finstream.training.export).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finstream.features.spec import FORECAST_FEATURES


def _fma(a: float, b: float, c: float) -> float:
    """a * b + c rounded once, as Java's Math.fma (exact integer arithmetic on the floats'
    binary fractions; int / int is correctly rounded). math.fma arrives only in Python 3.13."""
    na, da = a.as_integer_ratio()
    nb, db = b.as_integer_ratio()
    nc, dc = c.as_integer_ratio()
    dp = da * db  # powers of two: one divides the other
    if dp >= dc:
        return (na * nb + nc * (dp // dc)) / dp
    return (na * nb * (dc // dp) + nc) / dc


def _dot(x: Sequence[float], y: Sequence[float]) -> float:
    """ddot as the JVM BLAS MLlib uses on Java 11+ computes it: four interleaved partial sums
    of fused multiply-adds, added in order, then the remainder one by one."""
    sums = [0.0, 0.0, 0.0, 0.0]
    blocks = len(x) - len(x) % 4
    for i in range(0, blocks, 4):
        for lane in range(4):
            sums[lane] = _fma(x[i + lane], y[i + lane], sums[lane])
    total = 0.0 + (sums[0] + sums[1] + sums[2] + sums[3])
    for i in range(blocks, len(x)):
        total = _fma(x[i], y[i], total)
    return total


@dataclass(frozen=True)
class Linear:
    """MLlib's StandardScaler + LinearRegression pipeline."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]  # 1 / std, or 0.0 where std is 0 (StandardScalerModel)
    coefficients: tuple[float, ...]
    intercept: float

    def predict(self, features: Sequence[float]) -> float:
        """The output for one feature vector (the spec's order), as MLlib computes it."""
        scaled = [(x - m) * s for x, m, s in zip(features, self.mean, self.scale, strict=True)]
        return _dot(scaled, self.coefficients) + self.intercept


# A tree as flat arrays, node 0 the root: an internal node has feature >= 0 and children;
# a leaf has feature -1 and its prediction in `value`.
@dataclass(frozen=True)
class Tree:
    """One decision tree (see the layout above)."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def predict(self, features: Sequence[float]) -> float:
        """The output for one feature vector (the spec's order), as MLlib computes it."""
        node = 0
        while self.feature[node] >= 0:
            node = self.left[node] if features[self.feature[node]] <= self.threshold[node] else self.right[node]
        return self.value[node]


@dataclass(frozen=True)
class Forest:
    """A random forest: the mean of its trees."""

    trees: tuple[Tree, ...]

    def predict(self, features: Sequence[float]) -> float:
        """The output for one feature vector (the spec's order), as MLlib computes it."""
        total = 0.0
        for tree in self.trees:
            total = total + tree.predict(features)
        return total / len(self.trees)


@dataclass(frozen=True)
class Boosted:
    """Gradient-boosted trees: their outputs weighted by the ensemble's weights."""

    trees: tuple[Tree, ...]
    weights: tuple[float, ...]

    def predict(self, features: Sequence[float]) -> float:
        """The output for one feature vector (the spec's order), as MLlib computes it."""
        return _dot([tree.predict(features) for tree in self.trees], self.weights)


Scorer = Linear | Forest | Boosted


def _tree(spec: dict) -> Tree:
    return Tree(*(tuple(spec[k]) for k in ("feature", "threshold", "left", "right", "value")))


def scorer_from_spec(spec: dict) -> Scorer:
    """A scorer from a regressor's JSON (finstream.training.export.scoring_spec).

    Raises:
        ValueError: the spec names features this code does not compute, or an unknown kind.
    """
    unknown = [name for name in spec["features"] if name not in FORECAST_FEATURES]
    if unknown:
        raise ValueError(f"it was exported for features {spec['features']}, this code computes "
                         f"{list(FORECAST_FEATURES)} (not {unknown}): retrain it")
    kind = spec["kind"]
    if kind == "linear":
        return Linear(tuple(spec["mean"]), tuple(spec["scale"]), tuple(spec["coefficients"]), float(spec["intercept"]))
    if kind == "random_forest":
        return Forest(tuple(_tree(t) for t in spec["trees"]))
    if kind == "gbt":
        return Boosted(tuple(_tree(t) for t in spec["trees"]), tuple(spec["weights"]))
    raise ValueError(f"unknown model kind {kind!r}")
