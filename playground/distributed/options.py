"""`--ray ADDRESS|auto|local` and its companions, checked before any model loads (no Ray import here).

    --ray local            start a throwaway local cluster for this run (shut down when it ends)
    --ray auto             join the running cluster (`ray start --head` on this machine or RAY_ADDRESS)
    --ray HOST:PORT        join that cluster's GCS; ray://HOST:PORT goes through Ray Client
    --ray-actors N         engines (actors) to start, 1 … 64 (default: one per cpus-per-actor CPUs of the cluster)
    --ray-cpus-per-actor C CPUs each actor asks for, 1 … 256 (default 1); a GPU too where the cluster has one
"""
from __future__ import annotations

import argparse
import importlib.util
import re
from dataclasses import dataclass

from playground.settings.validation import InputError

MAX_ACTORS = 64
MAX_CPUS_PER_ACTOR = 256
_ADDRESS_RE = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True)
class RayOptions:
    address: str  # "local", "auto", "host:port" or "ray://host:port"
    actors: int | None = None  # None: as many as the cluster's CPUs allow (at most one per shard)
    cpus_per_actor: int = 1


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """Register --ray, --ray-actors and --ray-cpus-per-actor on a sub-command."""
    p.add_argument("--ray", default=None, metavar="ADDRESS|auto|local",
                   help="decode on a Ray cluster: local = a throwaway one here, auto = the running one, or HOST:PORT "
                        "(needs requirements-ray.txt); the numbers are the same as without it")
    p.add_argument("--ray-actors", default=None, help=f"engines to start on the cluster, 1 … {MAX_ACTORS} "
                                                      "(default: one per --ray-cpus-per-actor CPUs)")
    p.add_argument("--ray-cpus-per-actor", default="1", help=f"CPUs each engine asks for, 1 … {MAX_CPUS_PER_ACTOR} (default 1)")


def _int_in(name: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InputError(f"{name} must be a whole number in {low} … {high}; got {value!r}") from None
    if not low <= number <= high:
        raise InputError(f"{name} must be in {low} … {high}; got {number}")
    return number


def check_address(value: object) -> str:
    """local, auto, HOST:PORT or ray://HOST:PORT; InputError naming `ray` otherwise."""
    text = str(value).strip() if isinstance(value, str) else ""
    if text in ("local", "auto") or _ADDRESS_RE.match(text):
        return text
    raise InputError(f"ray must be local, auto, HOST:PORT or ray://HOST:PORT; got {value!r}")


def ray_installed() -> str | None:
    """None when Ray imports here, else why not (the message a user sees)."""
    if importlib.util.find_spec("ray") is None:
        return "ray: --ray needs the optional Ray extra (pip install -r requirements-ray.txt); ray is not installed"
    return None


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The checked Ray options of parsed arguments, or None without --ray; InputError names the option."""
    if getattr(args, "ray", None) is None:
        return None
    address = check_address(args.ray)
    actors = None if args.ray_actors is None else _int_in("ray-actors", args.ray_actors, 1, MAX_ACTORS)
    cpus = _int_in("ray-cpus-per-actor", args.ray_cpus_per_actor, 1, MAX_CPUS_PER_ACTOR)
    missing = ray_installed()
    if missing:
        raise InputError(missing)
    return RayOptions(address, actors, cpus)
