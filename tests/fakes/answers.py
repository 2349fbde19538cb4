"""Answers the real market-data API gave, as the fake REST server serves them again
(docs/reliability.md, "The API's real answers")."""

from __future__ import annotations

# I:NDX, day, 2023-03-09 .. 2023-03-15: 5 results of o h l c t only - an index has no volume,
# VWAP or trade count. Each bar starts at New York's midnight (EST, then EDT from 2023-03-12).
NDX = [
    {"o": 12230.83658266843, "h": 12340.44936267155, "l": 12217.74536351822, "c": 12264.64178551227,
     "t": 1678338000000},
    {"o": 12269.54722925584, "h": 12429.89440052211, "l": 12208.63013014588, "c": 12410.23950889041,
     "t": 1678424400000},
    {"o": 12361.82791116539, "h": 12406.78961720063, "l": 12208.57003735286, "c": 12311.04003593493,
     "t": 1678680000000},
    {"o": 12358.50765768521, "h": 12414.86108563851, "l": 12281.39226773217, "c": 12377.36991156857,
     "t": 1678766400000},
    {"o": 12263.09508718553, "h": 12286.21891429049, "l": 12081.21862418186, "c": 12228.4695767327,
     "t": 1678852800000},
]
NDX_CLOSES = [12264.64178551227, 12410.23950889041, 12311.04003593493, 12377.36991156857, 12228.4695767327]

# TJX, minute, 2020-08-27: 12 results, 8 of that day and 4 stamped 2017-02-03 (another symbol's
# prices, around $14.49 when TJX traded near $53.7).
TJX_2020 = [1598535000000 + i * 60_000 for i in range(4)] + [1598558340000, 1598558640000, 1598559840000,
                                                             1598560860000]
TJX_2017 = [1486132200000, 1486132320000, 1486133160000, 1486134720000]

# SPY, day: trade counts the API spelled 1.412331e+06, 1.105872e+06, 1.251006e+06 (a count under
# a million it spells as digits).
SPY_COUNTS = [1412331.0, 987654.0, 1105872.0, 1251006.0, 854321.0]
