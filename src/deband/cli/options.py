"""What every command shares: the parser class, option types, the restore options and the restorer."""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deband.config import DEFAULT_STEPS
from deband.errors import DebandError, ResourceError


class UsageError(DebandError):
    """A bad command line or option value."""


class Parser(argparse.ArgumentParser):
    """Usage errors as UsageError: one line, exit code 2."""

    def error(self, message: str) -> None:  # one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


def int_range(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v

    return parse


# The longest time a --start, --duration or --chunk may name: over three years, longer than
# any video, and far inside FFmpeg's 64-bit timestamps in any time base
MAX_SECONDS = 1e8


def number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def number_in(lo: float, hi: float = math.inf, above: bool = False):
    """A float option: a finite number from lo (excluded when `above`) to hi."""

    def parse(text: str) -> float:
        v = number(text)
        if v < lo or (above and v == lo) or v > hi:
            low = f"> {lo:g}" if above else f">= {lo:g}"
            raise argparse.ArgumentTypeError(f"must be {low}" + (f" and <= {hi:g}" if hi < math.inf else "")
                                             + f", got {text}")
        return v

    return parse


positive = number_in(0, above=True)
non_negative = number_in(0)
fraction = number_in(0, 1)  # a share, 0..1
seconds = number_in(0, MAX_SECONDS)  # a time in a video
duration = number_in(0, MAX_SECONDS, above=True)  # a length of video


def sampling(setting: str):
    """The --steps (an int) or --strength (a float) option type: refused at parse time by the
    rule the restorer itself applies (`restore.debander.check_sampling`, imported only when
    the option is given)."""

    def parse(text: str) -> float | int:
        from deband.errors import SettingError
        from deband.restore.debander import check_sampling

        if setting == "steps":
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        else:
            value = number(text)
        try:
            check_sampling(value, 1.0) if setting == "steps" else check_sampling(1, value)
        except SettingError as e:
            raise argparse.ArgumentTypeError(e.problem) from None
        return value

    return parse


def truncation_value(text: str) -> tuple[int, int]:
    """'SOURCE:BITS', e.g. '10:8': a cut from SOURCE to BITS bits by a bit shift."""
    try:
        source, bits = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SOURCE:BITS such as 10:8, got {text!r}") from None
    if not 1 <= bits < source <= 16:
        raise argparse.ArgumentTypeError(f"need 1 <= BITS < SOURCE <= 16, got {text!r}")
    return source, bits


def add_restore_options(p: argparse.ArgumentParser, planes: str = "rgb") -> None:
    """The restorer's options; `planes` is what a --truncated cut acted on ("rgb" for stills,
    "ycbcr" for video)."""
    p.add_argument("--steps", type=sampling("steps"), default=DEFAULT_STEPS,
                   help=f"INDI steps, 1-100 (default {DEFAULT_STEPS})")
    p.add_argument("--strength", type=sampling("strength"), default=1.0, help="0 < S <= 1: start time t (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of dither and sampling noise (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--tile", type=int_range(128, 16384), default=2048, help="tile side in pixels (default 2048)")
    p.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--restore-bars", action="store_true",
                   help="restore letterbox/pillarbox bars too (by default they are found and left untouched)")
    p.add_argument("--no-guard", action="store_true",
                   help="let the model move any pixel as far as it likes (by default each pixel moves at most "
                        "as far as banding could have moved it, which keeps faint detail)")
    if planes == "rgb":  # decoded video never sits on an R'G'B' grid
        p.add_argument("--no-grid", action="store_true",
                       help="leave values that sit on a coarse grid (an image re-quantised to 4-7 bits, chroma "
                            "stored at 4-6 bits) to the network alone (by default each is placed within its cell: "
                            "by the model's grid stages, and by the luma texture where a whole channel or plane "
                            "sits on one grid)")
    what = "R'G'B' channels" if planes == "rgb" else "Y'CbCr planes"
    p.add_argument("--truncated", type=truncation_value, metavar="SOURCE:BITS",
                   help=f"the source's {what} were cut from SOURCE to BITS bits by a bit shift (e.g. 10:8): "
                        "add back the offset that leaves, which no image shows")
    p.set_defaults(truncation_planes=planes)


def check_device(device: str) -> None:
    from deband.restore.debander import resolve_device

    try:
        resolve_device(device)
    except ResourceError:  # the only one it raises: no CUDA GPU
        raise UsageError(f"--device {device} was asked for, but no CUDA GPU is available") from None


def load_debander(args: argparse.Namespace, device: str | None = None):
    """The restorer the options ask for (on `device` when given); a bad weights file raises InputError."""
    from deband.restore.debander import Debander, Truncation, keep_freed_memory
    from deband.restore.guard import Guard

    device = device or args.device
    check_device(device)
    cut = getattr(args, "truncated", None)  # commands without restore options (serve) have none
    keep_freed_memory()
    return Debander.load(args.weights, device, steps=args.steps, strength=args.strength,
                         tile=args.tile, overlap=min(256, args.tile // 4), seed=args.seed,
                         bars=not args.restore_bars, guard=None if args.no_guard else Guard(),
                         truncation=Truncation(*cut, args.truncation_planes) if cut else None,
                         grid=not getattr(args, "no_grid", getattr(args, "truncation_planes", "rgb") != "rgb"))


def add_ray_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help=f"{what} as tasks of a Ray cluster: ADDRESS is host:6379 or ray://host:10001; without it, "
                        "the cluster running on this machine, else a new one on its cores (needs deband[cluster])")


@contextmanager
def ray_cluster(args: argparse.Namespace) -> Iterator:
    """Connected to the cluster --ray names while inside; yields its ClusterOptions."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--ray needs Ray: pip install 'deband[cluster]'")
    from deband.cluster.tasks import ClusterOptions, connect

    cluster = ClusterOptions(address=None if args.ray == "auto" else args.ray, device=args.device)
    with connect(cluster.address):
        yield cluster
