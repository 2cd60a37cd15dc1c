"""`deband image` and `deband inspect`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deband.cli.options import (
    add_ray_option,
    add_restore_options,
    int_range,
    load_debander,
    non_negative,
    positive,
    ray_cluster,
)
from deband.errors import InputError, UnsupportedError

EPILOG_IMAGE = """examples:
  deband image photo.png -o photo-clean.png          16-bit PNG out (default)
  deband image shots/ -o clean/ --compare             a folder, with before/after pictures
  deband image sky.jpg -o sky.png --steps 8           more steps: more natural gradients
  deband image sky.png -o sky-8bit.png --bit-depth 8  8-bit with dither
  deband image big.tif -o big-clean.tif --tile 1024   smaller tiles: less memory
  deband image shots/ -o clean/ --ray head:6379       each image a task of a Ray cluster
"""


EPILOG_INSPECT = """examples:
  deband inspect frame.png -o frame-banding.png      heat map of the banding in an image
  deband inspect film.mkv -o film-banding.html       CAMBI over time, scenes, banded ones marked
  deband inspect film.mkv -o film.csv --every 5      every 5th frame; film.csv and film-scenes.csv
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    img = sub.add_parser("image", help="deband image files or folders", epilog=EPILOG_IMAGE,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    img.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    img.add_argument("-o", "--output", type=Path, required=True, help="output file (one input) or folder")
    img.add_argument("--bit-depth", type=int, choices=[8, 16], default=16, help="16 (default) or 8 with dither")
    img.add_argument("--format", choices=["png", "tif"], default="png", help="format of files written to a folder")
    img.add_argument("--compare", action="store_true", help="also write NAME-compare.png (before | after)")
    img.add_argument("--max-pixels", type=int_range(1, 10**12), default=None,
                     help="refuse larger images (default 300 000 000)")
    add_restore_options(img)
    add_ray_option(img, "restore the images")
    img.set_defaults(run=cmd_image)
    ins = sub.add_parser("inspect", help="map where CAMBI finds banding in an image, or a video's banded scenes",
                         epilog=EPILOG_INSPECT, formatter_class=argparse.RawDescriptionHelpFormatter)
    ins.add_argument("input", type=Path, help="image file, or video file (with an .html or .csv output)")
    ins.add_argument("-o", "--output", type=Path, required=True,
                     help="image: PNG heat map; video: .html page or .csv tables of CAMBI over time")
    ins.add_argument("--max-log-contrast", type=int_range(1, 5), default=4,
                     help="2 sees fine steps only (libvmaf default); 4 also sees 6-7-bit steps (default 4)")
    ins.add_argument("--every", type=int_range(1, 10**6), default=1,
                     help="video: score every Nth frame and each scene's first (default 1: all)")
    ins.add_argument("--threshold", type=non_negative, default=5.0,
                     help="video: a scene is banded when its mean CAMBI is above this (default 5)")
    ins.add_argument("--cut-threshold", type=cut_value, default=0.08,
                     help="video: mean luma change of 32x32 thumbnails that makes a scene cut (default 0.08)")
    ins.add_argument("--overwrite", action="store_true")
    ins.set_defaults(run=cmd_inspect)


def cut_value(text: str) -> float:
    value = positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def cmd_image(args: argparse.Namespace) -> int:
    from deband.cli.exits import describe, exit_code, summarise
    from deband.io.files import DEFAULT_MAX_PIXELS
    from deband.restore.images import ImageOptions, run_batch

    opts = ImageOptions(bit_depth=args.bit_depth, suffix="." + args.format, overwrite=args.overwrite,
                        compare=args.compare, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    if args.ray is not None:
        from deband.cluster.images import run_batch_ray

        debander = load_debander(args, "cpu")  # the workers build their own
        with ray_cluster(args) as cluster:
            report = run_batch_ray(args.inputs, args.output, debander, opts, cluster, progress=sys.stderr.isatty())
    else:
        report = run_batch(args.inputs, args.output, load_debander(args), opts, progress=sys.stderr.isatty())
    for path in report.written:
        print(path)
    for _, err in report.failed:
        print(f"deband: error: {describe(err)}", file=sys.stderr)
    if args.output.is_dir():  # a folder mode
        summarise(report, len(report.written), "images deband reads")
    return max((exit_code(err) for _, err in report.failed), default=0)


def cmd_inspect(args: argparse.Namespace) -> int:
    from deband.video.timelinereport import SUFFIXES  # light: no torch

    if args.output.suffix.lower() in SUFFIXES:
        return cmd_inspect_video(args)
    from deband.restore.images import inspect_image

    try:
        score = inspect_image(args.input, args.output, args.max_log_contrast, args.overwrite)
    except UnsupportedError as e:
        raise UnsupportedError(f"{e} (for a video, write its timeline with -o NAME.html or NAME.csv)") from None
    print(f"{args.output}: CAMBI {score:.3f} (max_log_contrast {args.max_log_contrast})")
    return 0


def cmd_inspect_video(args: argparse.Namespace) -> int:
    from deband.video.timeline import TimelineOptions, scan
    from deband.video.timelinereport import check_report, write_report

    if not args.input.is_file():
        raise InputError(f"{args.input}: no such file")
    check_report(args.output, args.overwrite, args.input)  # before the scan
    opts = TimelineOptions(every=args.every, max_log_contrast=args.max_log_contrast, threshold=args.threshold,
                           cut_threshold=args.cut_threshold)
    line = scan(args.input, opts, progress=sys.stderr.isatty())
    for path in write_report(line, args.output, args.overwrite):
        print(path)
    banded = sum(s.banded for s in line.scenes)
    print(f"{args.input}: {len(line.frames)} frames, {len(line.scenes)} scenes, {banded} banded "
          f"(mean CAMBI above {args.threshold:g})")
    return 0
