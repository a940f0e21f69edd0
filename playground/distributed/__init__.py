"""Batch jobs bigger than one machine: sweeps, probes, calibration and the adapter report on a Ray cluster
(`--ray ADDRESS|auto|local`; the app's Trade-off tab with PLAYGROUND_RAY_ADDRESS).

`options` (no Ray import: the CLI checks `--ray` before anything loads); `jobs` (the entry points: ray_sweep,
ray_probe, ray_calibration, RayDecoder, the app's runner), `pool` (RayPool: the actors and the driver loop),
`shards` (what an actor runs on its part), `worker` (the actor), `specs` (what an actor loads) and `cluster`
(joining or starting one); these import Ray on use. Ray is an optional extra: `pip install -r requirements-ray.txt`.
See docs/distributed.md.
"""
