"""Load tests, example handlers and benchmarks for forkric."""
