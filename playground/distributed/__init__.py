"""Batch jobs bigger than one machine: sweeps, probes, calibration and the adapter report on a Ray cluster
(`--ray ADDRESS|auto|local`; the app's Trade-off tab with PLAYGROUND_RAY_ADDRESS).

`options` (no Ray import: the CLI checks `--ray` before anything loads) and `ray_runner` (the actors and the
driver loop; imports Ray on use). Ray is an optional extra: `pip install -r requirements-ray.txt`.
See docs/distributed.md.
"""
