"""Waits for the stream job's predictions of the last bars of a sample dataset, then prints
them beside the actual next close, with the live error of the model and of persistence."""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime, timezone

from finstream import elastic
from finstream.config import Settings
from producer import samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="goog-daily")
    parser.add_argument("--last", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    settings = Settings.load()
    es = elastic.client(settings)
    bars = samples.load_bars(args.dataset)[-args.last:]
    ids = [b.doc_id for b in bars]
    deadline = time.monotonic() + args.timeout
    while True:
        found = es.mget(index=settings.es_index_predictions, ids=ids)["docs"]
        docs = [d["_source"] for d in found if d.get("found")]
        # Every bar predicted, and every prediction but the last one judged.
        if len(docs) == len(ids) and sum("actual_close" in d for d in docs) == len(ids) - 1:
            break
        if time.monotonic() > deadline:
            print(f"after {args.timeout:.0f} s: {len(docs)} of {len(ids)} bars predicted in "
                  f"{settings.es_index_predictions}; is the stream job running and a lags model trained?",
                  file=sys.stderr)
            return 1
        time.sleep(1)

    print(f"live predictions in {settings.es_index_predictions} (model {docs[-1]['model_version']}, "
          f"{docs[-1]['model']}), the last 10 of {len(docs)}:")
    print(f"{'bar':<12}{'close':>10}{'predicted next':>16}{'actual next':>13}{'error':>9}{'persistence':>13}"
          f"{'latency ms':>12}")
    for d in docs[-10:]:
        day = datetime.fromtimestamp(d["timestamp"] / 1000, timezone.utc).strftime("%Y-%m-%d")
        actual = f"{d['actual_close']:>13.2f}{d['error']:>9.2f}{d['baseline_error']:>13.2f}" if "actual_close" in d \
            else f"{'(not yet)':>13}{'':>9}{'':>13}"
        print(f"{day:<12}{d['last_close']:>10.2f}{d['predicted_close']:>16.2f}{actual}{d['latency_ms']:>12}")
    judged = [d for d in docs if "actual_close" in d]
    rmse = math.sqrt(sum(d["error"] ** 2 for d in judged) / len(judged))
    persistence = math.sqrt(sum(d["baseline_error"] ** 2 for d in judged) / len(judged))
    print(f"live RMSE over {len(judged)} judged predictions: model {rmse:.3f}, persistence {persistence:.3f} "
          f"(ratio {rmse / persistence:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
