"""Neurometric's benchmark: the gateway against the no-gateway baseline, on the same fake provider.

Run ``python -m bench.run``; see bench/README.md.
"""
