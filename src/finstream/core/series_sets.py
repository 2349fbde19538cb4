"""Series sets: which series a model is for.

A set is a bar size (timespan and multiplier) and, optionally, an asset class (from the
ticker's prefix) or a list of tickers. Training records the set it trained on and registers
its model under a name that includes it (finstream.core.questions.registered_model_name);
the stream serves, for each series and question, the most specific champion whose set
covers the series: a ticker list beats an asset class, which beats a bare timespan.

A set's key names it in the registry and in MODEL_DIR: `hour1`, `hour1-fx`, `day1-stocks`,
`day1-t-AAPL+GOOG` (tickers sorted, `:` written `_`: `minute1-t-X_BTCUSD`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from finstream.core.schema import TIMESPANS

# The ticker's prefix names its market (Polygon / Massive conventions); no prefix: a US stock.
ASSET_CLASS_PREFIXES = {"X:": "crypto", "C:": "fx", "I:": "indices", "O:": "options"}
STOCKS = "stocks"
ASSET_CLASSES = (STOCKS, *ASSET_CLASS_PREFIXES.values())
TICKERS_MARK = "t"  # the key part before a ticker list
_KEY = re.compile(r"^(?P<timespan>[a-z]+)(?P<multiplier>[0-9]+)(?:-(?P<rest>.+))?$")


def asset_class(ticker: str) -> str:
    """The asset class a ticker's prefix names: crypto, fx, indices, options, or stocks."""
    for prefix, name in ASSET_CLASS_PREFIXES.items():
        if ticker.startswith(prefix):
            return name
    return STOCKS


@dataclass(frozen=True)
class SeriesSet:
    """The series a model is for.

    Attributes:
        timespan: the bars' timespan (finstream.core.schema.TIMESPANS).
        multiplier: the bars' multiplier.
        asset_class: one of ASSET_CLASSES, or None for every class.
        tickers: the tickers, or empty for every ticker (of the class).
    """

    timespan: str
    multiplier: int = 1
    asset_class: str | None = None
    tickers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.timespan not in TIMESPANS:
            raise ValueError(f"unknown timespan {self.timespan!r}: one of {', '.join(TIMESPANS)}")
        if self.asset_class is not None and self.asset_class not in ASSET_CLASSES:
            raise ValueError(f"unknown asset class {self.asset_class!r}: one of {', '.join(ASSET_CLASSES)}")
        if int(self.multiplier) < 1:
            raise ValueError(f"the multiplier must be 1 or more, not {self.multiplier}")

    @property
    def specificity(self) -> int:
        """2 for a ticker list, 1 for an asset class, 0 for a bare timespan."""
        return 2 if self.tickers else 1 if self.asset_class else 0

    @property
    def key(self) -> str:
        """The set's name in the registry and in MODEL_DIR (see the module's docstring)."""
        key = f"{self.timespan}{self.multiplier}"
        if self.tickers:
            return f"{key}-{TICKERS_MARK}-" + "+".join(sorted(t.replace(":", "_") for t in self.tickers))
        return f"{key}-{self.asset_class}" if self.asset_class else key

    def covers(self, ticker: str, timespan: str, multiplier: int) -> bool:
        """Whether the series (ticker, timespan, multiplier) is in the set."""
        if timespan != self.timespan or int(multiplier) != int(self.multiplier):
            return False
        if self.tickers:
            return ticker in self.tickers
        return self.asset_class is None or asset_class(ticker) == self.asset_class

    def as_dict(self) -> dict:
        """The set as a model's metadata records it (`series`)."""
        return {"timespan": self.timespan, "multiplier": int(self.multiplier), "asset_class": self.asset_class,
                "tickers": sorted(self.tickers), "key": self.key}

    @classmethod
    def from_dict(cls, series: dict) -> SeriesSet:
        """From a model's metadata `series` (a version registered before sets had an asset
        class is read as the timespan and tickers it was trained on)."""
        return cls(series["timespan"], int(series.get("multiplier", 1)), series.get("asset_class"),
                   frozenset(series.get("tickers") or ()))

    @classmethod
    def parse(cls, key: str) -> SeriesSet:
        """A set from its key (`--set hour1-fx`).

        Raises:
            ValueError: the key is not TIMESPAN MULTIPLIER [-CLASS | -t-TICKER+TICKER...].
        """
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"not a series set: {key!r} (e.g. day1, hour1-fx, day1-t-AAPL+GOOG)")
        timespan, multiplier, rest = match["timespan"], int(match["multiplier"]), match["rest"]
        if rest is None:
            return cls(timespan, multiplier)
        if rest.startswith(f"{TICKERS_MARK}-"):
            tickers = frozenset(t.replace("_", ":") for t in rest[len(TICKERS_MARK) + 1:].split("+") if t)
            if not tickers:
                raise ValueError(f"not a series set: {key!r} (no ticker after -{TICKERS_MARK}-)")
            return cls(timespan, multiplier, tickers=tickers)
        return cls(timespan, multiplier, asset_class=rest)

    @classmethod
    def trained_on(cls, timespan: str, multiplier: int, tickers: Iterable[str], listed: bool) -> SeriesSet:
        """The set a training run is for: its tickers when they were listed (`--tickers`), else
        their asset class when they share one, else the bare timespan."""
        tickers = frozenset(tickers)
        if listed and tickers:
            return cls(timespan, multiplier, tickers=tickers)
        classes = {asset_class(t) for t in tickers}
        return cls(timespan, multiplier, asset_class=classes.pop() if len(classes) == 1 else None)


def most_specific(candidates: Iterable[tuple[SeriesSet, object]], ticker: str, timespan: str,
                  multiplier: int) -> object | None:
    """Of (set, value) pairs, the value of the most specific set that covers the series, or
    None. Equally specific sets that both cover it: the one whose key sorts first (stable)."""
    covering = [(s, value) for s, value in candidates if s.covers(ticker, timespan, multiplier)]
    if not covering:
        return None
    return min(covering, key=lambda pair: (-pair[0].specificity, pair[0].key))[1]
