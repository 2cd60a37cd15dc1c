"""The `deband` command: parse, validate, call the library. Errors are one line and an exit code.

Library modules raise the typed errors of `deband.errors`; this module alone turns them into
exit codes (`EXIT_CODES`) and adds hints about its options (`describe`). Heavy modules (torch,
PyAV, OpenCV, training) are imported inside the commands, so `build_parser` stays light.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from deband.config import DEFAULT_STEPS
from deband.errors import (
    BitDepthError,
    DebandError,
    InputError,
    OutputError,
    OutputExistsError,
    ResourceError,
    TooManyPixelsError,
    UnsupportedError,
)
from deband.outputs import terminate_as_interrupt

EPILOG_IMAGE = """examples:
  deband image photo.png -o photo-clean.png          16-bit PNG out (default)
  deband image shots/ -o clean/ --compare             a folder, with before/after pictures
  deband image sky.jpg -o sky.png --steps 8           more steps: more natural gradients
  deband image sky.png -o sky-8bit.png --bit-depth 8  8-bit with dither
  deband image big.tif -o big-clean.tif --tile 1024   smaller tiles: less memory
"""

EPILOG_VIDEO = """examples:
  deband video clip.mp4 -o clip-deband.mkv                  10-bit HEVC, audio/subtitles copied
  deband video clip.mp4 -o test.mkv --start 60 --duration 5 try settings on 5 seconds
  deband video clip.mp4 -o demo.mp4 --compare split         before | after demo video
  deband video clip.mp4 -o out.mp4 --codec libx264 --crf 16 H.264 High 10
  deband video clip.mp4 -o out8.mp4 --bit-depth 8           8-bit with a fixed dither
"""

EPILOG_TRAIN = """examples:
  deband train --out runs/mine                        train with the default config
  deband train --out runs/mine --resume               continue an interrupted run
  deband train --out runs/mine --folder ~/clean-pngs  add your own clean images
  deband train --out runs/tuned --init model.safetensors   fine-tune existing weights
  torchrun --nproc_per_node 2 -m deband.train --out runs/ddp   data-parallel
"""


class UsageError(DebandError):
    """A bad command line or option value."""


# Exit codes, as documented in the README
USAGE = 2  # bad command line or option value
UNREADABLE = 3  # input missing, unreadable, truncated or corrupt
UNSUPPORTED = 4  # input readable but of a kind deband does not handle
OUTPUT = 5  # output exists, cannot be written, or the disk is full
RESOURCES = 6  # too large for --max-pixels, out of memory
INTERRUPTED = 130  # Ctrl-C or SIGTERM

# the first entry whose type matches wins
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, USAGE),
    (InputError, UNREADABLE),
    (UnsupportedError, UNSUPPORTED),
    (OutputError, OUTPUT),
    (OSError, OUTPUT),  # writing failed (disk full, no permission)
    (ResourceError, RESOURCES),
    (MemoryError, RESOURCES),
    (KeyboardInterrupt, INTERRUPTED),
)


def exit_code(error: BaseException) -> int:
    """The exit code for an error, from EXIT_CODES."""
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def describe(error: DebandError) -> str:
    """The error's message plus a hint naming the option that gets around it, if one does."""
    if isinstance(error, OutputExistsError):
        return f"{error} (use --overwrite to replace it)"
    if isinstance(error, TooManyPixelsError):
        return f"{error} (raise it with --max-pixels)"
    if isinstance(error, BitDepthError):
        return f"{error} or --bit-depth 8"
    if isinstance(error, ResourceError):  # out of memory
        return f"{error} (try a smaller --tile)"
    return str(error)


PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


class _Parser(argparse.ArgumentParser):
    """Usage errors as UsageError: one line, exit code 2."""

    def error(self, message: str) -> None:  # one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


def _int_range(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v

    return parse


def _strength(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def _add_restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=_int_range(1, 100), default=DEFAULT_STEPS,
                   help=f"INDI steps (default {DEFAULT_STEPS})")
    p.add_argument("--strength", type=_strength, default=1.0, help="0 < S <= 1: start time t (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of dither and sampling noise (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--tile", type=_int_range(128, 16384), default=2048, help="tile side in pixels (default 2048)")
    p.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--restore-bars", action="store_true",
                   help="restore letterbox/pillarbox bars too (by default they are found and left untouched)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="deband", description="Remove banding from images and videos.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    img = sub.add_parser("image", help="deband image files or folders", epilog=EPILOG_IMAGE,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    img.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    img.add_argument("-o", "--output", type=Path, required=True, help="output file (one input) or folder")
    img.add_argument("--bit-depth", type=int, choices=[8, 16], default=16, help="16 (default) or 8 with dither")
    img.add_argument("--format", choices=["png", "tif"], default="png", help="format of files written to a folder")
    img.add_argument("--compare", action="store_true", help="also write NAME-compare.png (before | after)")
    img.add_argument("--max-pixels", type=_int_range(1, 10**12), default=None,
                     help="refuse larger images (default 300 000 000)")
    _add_restore_options(img)
    vid = sub.add_parser("video", help="deband a video file", epilog=EPILOG_VIDEO,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    vid.add_argument("input", type=Path, help="video file (anything FFmpeg decodes)")
    vid.add_argument("-o", "--output", type=Path, required=True, help="output file (.mkv, .mp4, .mov)")
    vid.add_argument("--codec", choices=["libx265", "libx264", "ffv1"], default="libx265")
    vid.add_argument("--crf", type=_int_range(0, 51), default=18, help="quality, lower is better (default 18)")
    vid.add_argument("--preset", default="medium", choices=PRESETS, metavar="PRESET",
                     help="x264/x265 speed preset, ultrafast ... placebo (default medium)")
    vid.add_argument("--bit-depth", type=int, choices=[8, 10], default=10, help="10 (default) or 8 with dither")
    vid.add_argument("--start", type=float, help="start at this many seconds")
    vid.add_argument("--duration", type=float, help="process this many seconds")
    vid.add_argument("--compare", choices=["split", "side-by-side"], help="render a before/after demo")
    vid.add_argument("--batch", type=_int_range(1, 64), default=4, help="frames per model call (default 4)")
    _add_restore_options(vid)
    ev = sub.add_parser("eval", help="benchmark against FFmpeg's debanders; print a Markdown table",
                        epilog="examples:\n  deband eval\n"
                        "  deband eval --report benchmarks --reference ../shared/reference-examples",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--n", type=_int_range(1, 1000), default=12, help="images per synthetic set (default 12)")
    ev.add_argument("--size", type=_int_range(64, 4096), default=384, help="synthetic image side (default 384)")
    ev.add_argument("--steps", default="1,2,4,8,30", help="comma-separated INDI step counts")
    ev.add_argument("--reference", type=Path, help="folder of real banded-N.png (and seed-restored-N.png) frames")
    ev.add_argument("--json", type=Path, help="also write all numbers as JSON here")
    ev.add_argument("--report", type=Path, help="write quality.md and its figures into this folder")
    ev.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    ins = sub.add_parser("inspect", help="write a map of where CAMBI finds banding",
                         epilog="examples:\n  deband inspect frame.png -o frame-banding.png",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ins.add_argument("input", type=Path, help="image file")
    ins.add_argument("-o", "--output", type=Path, required=True, help="PNG heat map over the image")
    ins.add_argument("--max-log-contrast", type=_int_range(1, 5), default=4,
                     help="2 sees fine steps only (libvmaf default); 4 also sees 6-7-bit steps (default 4)")
    ins.add_argument("--overwrite", action="store_true")
    tr = sub.add_parser("train", help="train a model", epilog=EPILOG_TRAIN,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_options(tr)
    return p


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v:g}")
    return v


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder: config, log, checkpoints, weights")
    p.add_argument("--config", help="JSON TrainConfig to start from (defaults otherwise)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--init", help="start from these .safetensors weights (fresh optimiser and schedule)")
    p.add_argument("--steps", type=int, help="override the number of optimiser steps")
    p.add_argument("--batch", type=int, help="override patches per step per process")
    p.add_argument("--loss", choices=["magphase", "reim", "none"], help="override the FFT loss")
    p.add_argument("--folder", action="append", default=[], help="extra folder of clean images (repeatable)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--workers", type=_int_range(0, 1024), default=0,
                   help="processes synthesising training pairs (0: this one)")
    p.add_argument("--minutes", type=_positive,
                   help="fit the step count to this wall-clock budget (measured over warm-up)")


def _check_device(device: str) -> None:
    from deband.restore import resolve_device

    try:
        resolve_device(device)
    except ResourceError:  # the only one it raises: no CUDA GPU
        raise UsageError(f"--device {device} was asked for, but no CUDA GPU is available") from None


def _debander(args: argparse.Namespace):
    """The restorer the options ask for; a bad weights file raises InputError."""
    from deband.restore import Debander

    _check_device(args.device)
    return Debander.load(args.weights, args.device, steps=args.steps, strength=args.strength,
                         tile=args.tile, overlap=min(256, args.tile // 4), seed=args.seed,
                         bars=not args.restore_bars)


def cmd_image(args: argparse.Namespace) -> int:
    from deband.images import ImageOptions, run_batch
    from deband.io import DEFAULT_MAX_PIXELS, list_inputs

    inputs = list_inputs(args.inputs)
    if not inputs:
        raise InputError("no images found in the given folders")
    opts = ImageOptions(bit_depth=args.bit_depth, suffix="." + args.format, overwrite=args.overwrite,
                        compare=args.compare, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    report = run_batch(inputs, args.output, _debander(args), opts, progress=sys.stderr.isatty())
    for path in report.written:
        print(path)
    if report.failed:
        for _, err in report.failed:
            print(f"deband: error: {describe(err)}", file=sys.stderr)
        if len(inputs) > 1:
            print(f"deband: {len(report.failed)} of {len(inputs)} images failed", file=sys.stderr)
        return max(exit_code(err) for _, err in report.failed)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from deband.video import VideoOptions, check_paths, deband_video

    try:
        opts = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, bit_depth=args.bit_depth,
                            start=args.start, duration=args.duration, compare=args.compare, batch=args.batch,
                            overwrite=args.overwrite, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"deband video: {e}") from None
    check_paths(args.input, args.output, args.overwrite)  # before the model is loaded
    debander = _debander(args)
    report = deband_video(args.input, args.output, debander, opts, progress=sys.stderr.isatty())
    print(f"{args.output}: {report.frames_out} frames, {report.fps:.2f} frames/s")
    if report.skipped_packets:
        print(f"deband: warning: skipped {report.skipped_packets} corrupt packet(s)", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from deband.evaluate import markdown, run_eval, save_json

    try:
        steps = tuple(int(v) for v in args.steps.split(","))
    except ValueError:
        raise UsageError(f"deband eval: --steps takes integers joined by commas, not {args.steps!r}") from None
    _check_device(args.device)
    results = run_eval(str(args.weights) if args.weights else None, args.n, args.size, steps,
                       reference=args.reference, device=args.device)
    for name, rows in results.items():
        print(f"\n### {name}\n\n{markdown(rows)}")
    if args.json:
        save_json(results, args.json)
    if args.report:
        from deband.evaluate import make_report

        command = "deband " + " ".join(sys.argv[1:])
        weights = str(args.weights) if args.weights else None
        path = make_report(results, args.report, command, weights, reference=args.reference)
        print(f"\nwrote {path}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from deband.images import banding_map
    from deband.io import read_image, write_image

    pic = read_image(args.input)
    heat, score = banding_map(pic.rgb(), args.max_log_contrast)
    write_image(args.output, heat, overwrite=args.overwrite)
    print(f"{args.output}: CAMBI {score:.3f} (max_log_contrast {args.max_log_contrast})")
    return 0


def train_config(args: argparse.Namespace):
    """The run's TrainConfig: --config, else OUT/config.json when resuming, else the defaults;
    then the overrides given on the command line."""
    from dataclasses import replace

    from deband.config import TrainConfig, load_train_config

    resumed = Path(args.out) / "config.json"
    try:
        if args.config:
            cfg = load_train_config(args.config)
        elif args.resume and resumed.exists():
            cfg = load_train_config(resumed)
        else:
            cfg = TrainConfig()
    except (ValueError, TypeError) as e:  # a missing file stays an OSError, reported as before
        raise InputError(f"{args.config or resumed}: not a training config ({e})") from None
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    if args.batch is not None:
        cfg = replace(cfg, batch=args.batch)
    if args.loss is not None:
        cfg = replace(cfg, loss=replace(cfg.loss, fft=args.loss))
    if args.folder:
        cfg = replace(cfg, data=replace(cfg.data, folders=tuple(cfg.data.folders) + tuple(args.folder)))
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from deband.train import ConfigMismatchError, train

    try:
        train(train_config(args), args.out, args.resume, args.device, args.init, args.workers, args.minutes)
    except ConfigMismatchError as e:
        raise UsageError(f"{e}; pass a matching --config") from None
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; returns its exit code."""
    if args.command == "image":
        return cmd_image(args)
    if args.command == "video":
        return cmd_video(args)
    if args.command == "eval":
        return cmd_eval(args)
    if args.command == "inspect":
        return cmd_inspect(args)
    if args.command == "train":
        return cmd_train(args)
    raise UsageError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit becomes an OSError we report, not a crash
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    debug = "--debug" in argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with terminate_as_interrupt():  # SIGTERM cleans up as Ctrl-C does
            return run_command(build_parser().parse_args(argv))
    except DebandError as e:
        if debug:
            raise
        print(f"deband: error: {describe(e)}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt as e:
        print("deband: interrupted; no partial output was left", file=sys.stderr)
        return exit_code(e)
    except MemoryError as e:
        print("deband: error: out of memory (try a smaller --tile)", file=sys.stderr)
        return exit_code(e)
    except OSError as e:
        if debug:
            raise
        print(f"deband: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    raise SystemExit(main())
