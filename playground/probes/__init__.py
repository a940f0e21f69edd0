"""Behaviour probes vs λ (see base.py and registry.py); this file stays empty so imports stay explicit."""
