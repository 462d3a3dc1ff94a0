"""Benchmarks of spoco-monai: each module prints one table; run them from the repository root as
``python -m bench.<name>`` (e.g. ``python -m bench.models3d``). ``RESULTS.md`` holds the current tables."""
