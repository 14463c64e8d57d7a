"""optcheck's pytest-benchmark suite (benchmarks/README.md); not an installed package.

A package so that ``python -m benchmarks.targets`` and the CI smoke test
(``tests/test_benchmarks_smoke.py``) import its modules from the repository root.
"""
