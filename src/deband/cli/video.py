"""`deband video`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deband.cli.options import UsageError, add_restore_options, int_range, load_debander, non_negative

EPILOG_VIDEO = """examples:
  deband video clip.mp4 -o clip-deband.mkv                  10-bit HEVC, audio/subtitles copied
  deband video clip.mp4 -o test.mkv --start 60 --duration 5 try settings on 5 seconds
  deband video clip.mp4 -o demo.mp4 --compare split         before | after demo video
  deband video clip.mp4 -o out.mp4 --codec libx264 --crf 16 H.264 High 10
  deband video clip.mp4 -o out8.mp4 --bit-depth 8           8-bit with a fixed dither
  ffmpeg -i in.mkv -f yuv4mpegpipe -strict -1 - | deband video - -o - | x265 --y4m - -o out.hevc
                                              - and -o -: YUV4MPEG2 from stdin to stdout
"""

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    vid = sub.add_parser("video", help="deband a video file", epilog=EPILOG_VIDEO,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    vid.add_argument("input", type=Path, help="video file (anything FFmpeg decodes)")
    vid.add_argument("-o", "--output", type=Path, required=True, help="output file (.mkv, .mp4, .mov)")
    vid.add_argument("--codec", choices=["libx265", "libx264", "ffv1"], default="libx265")
    vid.add_argument("--crf", type=int_range(0, 51), default=18, help="quality, lower is better (default 18)")
    vid.add_argument("--preset", default="medium", choices=PRESETS, metavar="PRESET",
                     help="x264/x265 speed preset, ultrafast ... placebo (default medium)")
    vid.add_argument("--bit-depth", type=int, choices=[8, 10], default=10, help="10 (default) or 8 with dither")
    vid.add_argument("--start", type=float, help="start at this many seconds")
    vid.add_argument("--duration", type=float, help="process this many seconds")
    vid.add_argument("--compare", choices=["split", "side-by-side"], help="render a before/after demo")
    vid.add_argument("--batch", type=int_range(1, 64), default=4, help="frames per model call (default 4)")
    vid.add_argument("--only-banded", type=non_negative, metavar="CAMBI",
                     help="restore only scenes whose mean CAMBI (max_log_contrast 4) is above this; see inspect")
    add_restore_options(vid)
    vid.set_defaults(run=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from deband.video import VideoOptions, check_paths, deband_video

    try:
        opts = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, bit_depth=args.bit_depth,
                            start=args.start, duration=args.duration, compare=args.compare, batch=args.batch,
                            overwrite=args.overwrite, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"deband video: {e}") from None
    if Path("-") in (args.input, args.output):
        return _cmd_pipe(args, opts)
    check_paths(args.input, args.output, args.overwrite)  # before the model is loaded
    debander = load_debander(args)
    if args.only_banded is not None:  # a first pass finds the banded scenes
        from deband.timeline import only_banded

        debander = only_banded(debander, args.input, args.only_banded, args.start, args.duration, sys.stderr.isatty())
    report = deband_video(args.input, args.output, debander, opts, progress=sys.stderr.isatty())
    print(f"{args.output}: {report.frames_out} frames, {report.fps:.2f} frames/s")
    if report.skipped_packets:
        print(f"deband: warning: skipped {report.skipped_packets} corrupt packet(s)", file=sys.stderr)
    return 0


def _cmd_pipe(args: argparse.Namespace, opts) -> int:
    """`deband video - -o -`: YUV4MPEG2 from stdin to stdout; messages go to stderr. When the
    reader of stdout goes away: one line and exit code BROKEN_PIPE (141, as for SIGPIPE)."""
    from deband.cli import BROKEN_PIPE
    from deband.video.y4m import deband_y4m

    if args.input != Path("-") or args.output != Path("-"):
        raise UsageError("deband video: a pipe needs both ends: `deband video - -o -` (YUV4MPEG2 in and out)")
    debander = load_debander(args)
    try:
        report = deband_y4m(sys.stdin.buffer, sys.stdout.buffer, debander, opts, progress=sys.stderr.isatty())
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        print("deband: the reader closed the output pipe; stopped", file=sys.stderr)
        return BROKEN_PIPE
    print(f"-: {report.frames_out} frames, {report.fps:.2f} frames/s", file=sys.stderr)
    return 0
