"""Batch jobs bigger than one machine: sweeps on a Ray cluster (`--ray ADDRESS|auto|local`).

`options` (no Ray import: the CLI checks `--ray` before anything loads) and `ray_runner` (the actors and the
driver loop; imports Ray on use). Ray is an optional extra: `pip install -r requirements-ray.txt`.
See docs/distributed.md.
"""
