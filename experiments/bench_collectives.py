"""Cost of the collectives the mesh axes use, on this machine's devices.

A data-parallel update all-reduces (pmean) the gradients once per update; the model axis moves
activations between devices inside every layer. This times one all-reduce of N float32 values
across D devices (a jitted shard_map running a scan of them), for the gradient sizes of the
project's networks, so BENCHMARKS.md can put numbers on when an axis pays off.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/bench_collectives.py
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from purejaxdqn.algorithm import parallel
from timing import best_seconds


def time_pmean(num_devices: int, size: int, iterations: int, repeats: int) -> float:
    """Seconds per all-reduce (pmean) of `size` float32 values over `num_devices` devices."""
    mesh = parallel.make_mesh(parallel.MeshShape(1, num_devices))

    def local(x):
        def body(x, _):
            return jax.lax.pmean(x * 1.0001, parallel.DATA), None

        return jax.lax.scan(body, x, None, length=iterations)[0]

    fn = jax.jit(parallel.shard(local, mesh, P(parallel.DATA), P(parallel.DATA)))
    x = jnp.ones((num_devices * size,), jnp.float32)
    return best_seconds(fn.lower(x).compile(), x, repeats=repeats) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
    # parameter counts: cartpole preset (MLP 64-64), reference (120-84), Breakout-MinAtar preset
    # (conv 16 3x3 + dense 128), and a wide 16M-parameter network
    parser.add_argument("--sizes", type=int, nargs="+", default=[4_610, 10_934, 132_179, 16_000_000])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{jax.device_count()} {jax.default_backend()} devices ({jax.devices()[0].device_kind})")
    print("| devices | floats | MB | us per all-reduce | GB/s (bytes / time) |")
    print("|---|---|---|---|---|")
    rows = []
    for d in args.devices:
        for n in args.sizes:
            iterations = args.iterations if n < 1_000_000 else max(5, args.iterations // 20)
            s = time_pmean(d, n, iterations, args.repeats)
            rows.append({"devices": d, "floats": n, "us": s * 1e6})
            print(f"| {d} | {n:,} | {n * 4 / 1e6:.2f} | {s * 1e6:,.1f} | {n * 4 / s / 1e9:.2f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
