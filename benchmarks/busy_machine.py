"""One network restore while other work keeps every core busy, with OpenMP's waiting threads
spinning (libgomp's default) and sleeping (OMP_WAIT_POLICY=PASSIVE, what `deband` sets).

A busy machine is the normal case for video: the encoder's threads run beside the network.
The load here is a second process doing float32 matrix products on as many threads as there
are cores. Each measurement runs in a fresh child, since the policy is read when OpenMP
starts.

    python benchmarks/busy_machine.py [--size 960x540] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = """
import time, torch
from deband.restore.debander import Debander
deb = Debander.load(device="cpu")
x = torch.rand(1, 3, {h}, {w})
deb.restore_batch(x)
best = 1e9
for _ in range({runs}):
    t = time.perf_counter(); deb.restore_batch(x); best = min(best, time.perf_counter() - t)
print(best)
"""

LOAD = """
import torch
torch.set_num_threads(torch.get_num_threads())
a = torch.rand(1024, 1024)
while True:
    a = (a @ a).clamp_(-1, 1)
"""


def child_seconds(policy: str | None, h: int, w: int, runs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD.format(h=h, w=w, runs=runs)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="960x540", help="WIDTHxHEIGHT of the restored frame")
    p.add_argument("--runs", type=int, default=3, help="timed restores per child; the best is shown")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    print(f"{os.cpu_count()} CPUs; {w}x{h}, default 2 INDI steps, best of {args.runs}")
    print("| machine | OpenMP threads waiting | restore (s) |\n|---|---|---|")
    for busy in (False, True):
        load = subprocess.Popen([sys.executable, "-c", LOAD]) if busy else None
        try:
            if load is not None:
                time.sleep(2)  # let the load start
            for policy, label in ((None, "spin (libgomp default)"), ("PASSIVE", "sleep (PASSIVE)")):
                seconds = child_seconds(policy, h, w, args.runs)
                print(f"| {'busy' if busy else 'quiet'} | {label} | {seconds:.2f} |", flush=True)
        finally:
            if load is not None:
                load.kill()
                load.wait()


if __name__ == "__main__":
    main()
