"""Benchmarks (make bench, bench-latency, bench-soak): run from the checkout as modules,
`python -m bench.<name>`, so that they import each other and the project like any package."""
