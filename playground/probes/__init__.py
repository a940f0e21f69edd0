"""Behaviour probes vs λ (see base.py, result.py, statistics.py and registry.py); this file stays empty so imports
stay explicit."""
