"""`deband video`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deband.cli.options import UsageError, add_restore_options, int_range, load_debander

EPILOG_VIDEO = """examples:
  deband video clip.mp4 -o clip-deband.mkv                  10-bit HEVC, audio/subtitles copied
  deband video clip.mp4 -o test.mkv --start 60 --duration 5 try settings on 5 seconds
  deband video clip.mp4 -o demo.mp4 --compare split         before | after demo video
  deband video clip.mp4 -o out.mp4 --codec libx264 --crf 16 H.264 High 10
  deband video clip.mp4 -o out8.mp4 --bit-depth 8           8-bit with a fixed dither
  deband video film.mkv -o film-deband.mkv --jobs 2         two chunks at a time; rerun to resume
  deband video films/ -o debanded/                          every video of a folder

Long videos are made in chunks of about 30 s cut at keyframes, kept in a hidden work folder
beside the output until joined: after Ctrl-C, a kill or a power cut, the same command
carries on where it stopped (--fresh starts over).
"""

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    vid = sub.add_parser("video", help="deband a video file", epilog=EPILOG_VIDEO,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    vid.add_argument("input", type=Path, help="video file (anything FFmpeg decodes) or a folder of them")
    vid.add_argument("-o", "--output", type=Path, required=True,
                     help="output file (.mkv, .mp4, .mov), or folder when the input is one")
    vid.add_argument("--codec", choices=["libx265", "libx264", "ffv1"], default="libx265")
    vid.add_argument("--crf", type=int_range(0, 51), default=18, help="quality, lower is better (default 18)")
    vid.add_argument("--preset", default="medium", choices=PRESETS, metavar="PRESET",
                     help="x264/x265 speed preset, ultrafast ... placebo (default medium)")
    vid.add_argument("--bit-depth", type=int, choices=[8, 10], default=10, help="10 (default) or 8 with dither")
    vid.add_argument("--start", type=float, help="start at this many seconds")
    vid.add_argument("--duration", type=float, help="process this many seconds")
    vid.add_argument("--compare", choices=["split", "side-by-side"], help="render a before/after demo")
    vid.add_argument("--batch", type=int_range(1, 64), default=4, help="frames per model call (default 4)")
    vid.add_argument("--chunk", type=non_negative, default=30.0, metavar="SECONDS",
                     help="chunk length, cut at keyframes; 0: one chunk (default 30)")
    vid.add_argument("--jobs", type=int_range(1, 64), default=1, help="chunks made at once (default 1)")
    vid.add_argument("--fresh", action="store_true", help="discard what an interrupted run left and start over")
    add_restore_options(vid)
    vid.set_defaults(run=cmd_video)


def non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v:g}")
    return v


def cmd_video(args: argparse.Namespace) -> int:
    from deband.video import VideoOptions, check_paths
    from deband.video.jobs import ChunkOptions, deband_video_chunked

    try:
        opts = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, bit_depth=args.bit_depth,
                            start=args.start, duration=args.duration, compare=args.compare, batch=args.batch,
                            overwrite=args.overwrite, seed=args.seed)
        chunking = ChunkOptions(seconds=args.chunk, jobs=args.jobs, fresh=args.fresh)
    except ValueError as e:
        raise UsageError(f"deband video: {e}") from None
    if args.input.is_dir():
        return _cmd_library(args, opts, chunking)
    check_paths(args.input, args.output, args.overwrite)  # before the model is loaded
    debander = load_debander(args)
    report = deband_video_chunked(args.input, args.output, debander, opts, chunking, progress=sys.stderr.isatty())
    print(f"{args.output}: {report.frames_out} frames, {report.fps:.2f} frames/s")
    if report.skipped_packets:
        print(f"deband: warning: skipped {report.skipped_packets} corrupt packet(s)", file=sys.stderr)
    return 0


def _cmd_library(args: argparse.Namespace, opts, chunking) -> int:
    """A folder: every video in it, then a summary table; the highest failure's exit code."""
    from deband.cli import describe, exit_code
    from deband.errors import DebandError, OutputError
    from deband.video.library import deband_library

    if args.output.is_file():
        raise OutputError(f"{args.output}: is a file; give a folder for the outputs of a folder")
    report = deband_library(args.input, args.output, load_debander(args), opts, chunking,
                            progress=sys.stderr.isatty())
    rows = [("done", src, f"{r.frames_out} frames, {r.fps:.2f} frames/s -> {dst}") for src, dst, r in report.done]
    rows += [("failed", src, describe(e) if isinstance(e, DebandError) else str(e)) for src, e in report.failed]
    rows += [("skipped", src, f"{dst} exists (--overwrite replaces it)") for src, dst in report.skipped]
    width = max(len(src.name) for _, src, _ in rows)
    for status, src, detail in rows:
        print(f"{status:8} {src.name:{width}}  {detail}")
    total = len(rows)
    print(f"{len(report.done)} done, {len(report.failed)} failed, {len(report.skipped)} skipped of {total}")
    for _, e in report.failed:
        print(f"deband: error: {describe(e) if isinstance(e, DebandError) else e}", file=sys.stderr)
    return max((exit_code(e) for _, e in report.failed), default=0)
