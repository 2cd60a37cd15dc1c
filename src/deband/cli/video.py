"""`deband video`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deband.cli.options import (
    UsageError,
    add_ray_option,
    add_restore_options,
    duration,
    int_range,
    load_debander,
    non_negative,
    ray_cluster,
    seconds,
)

EPILOG_VIDEO = """examples:
  deband video clip.mp4 -o clip-deband.mkv                  10-bit HEVC, audio/subtitles copied
  deband video clip.mp4 -o test.mkv --start 60 --duration 5 try settings on 5 seconds
  deband video clip.mp4 -o demo.mp4 --compare split         before | after demo video
  deband video clip.mp4 -o out.mp4 --codec libx264 --crf 16 H.264 High 10
  deband video clip.mp4 -o out8.mp4 --bit-depth 8           8-bit with a fixed dither
  ffmpeg -i in.mkv -f yuv4mpegpipe -strict -1 - | deband video - -o - | x265 --y4m - -o out.hevc
                                              - and -o -: YUV4MPEG2 from stdin to stdout
  deband video film.mkv -o film-deband.mkv --jobs 2         two chunks at a time; rerun to resume
  deband video films/ -o debanded/                          every video of a folder
  deband video film.mkv -o out.mkv --ray head:6379          chunks as tasks of a Ray cluster
  deband video films/ -o debanded/ --ray                    on the Ray cluster of this machine

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
    vid.add_argument("--start", type=seconds, help="start at this many seconds")
    vid.add_argument("--duration", type=duration, help="process this many seconds")
    vid.add_argument("--compare", choices=["split", "side-by-side"], help="render a before/after demo")
    vid.add_argument("--batch", type=int_range(1, 64), default=4, help="frames per model call (default 4)")
    vid.add_argument("--only-banded", type=non_negative, metavar="CAMBI",
                     help="restore only scenes whose mean CAMBI (max_log_contrast 4) is above this; see inspect")
    vid.add_argument("--chunk", type=seconds, default=30.0, metavar="SECONDS",
                     help="chunk length, cut at keyframes; 0: one chunk (default 30)")
    vid.add_argument("--jobs", type=int_range(1, 64), default=1, help="chunks made at once (default 1)")
    vid.add_argument("--fresh", action="store_true", help="remove every work folder of the output and start over")
    order = vid.add_mutually_exclusive_group()
    order.add_argument("--serial", dest="pipeline", action="store_const", const=False,
                       help="run decode, model and encode one after another (the default on a CPU)")
    order.add_argument("--pipelined", dest="pipeline", action="store_const", const=True,
                       help="run decode, model and encode at the same time in threads (the default on a GPU)")
    add_ray_option(vid, "make the chunks (of every video of a folder)")
    add_restore_options(vid, planes="ycbcr")
    vid.set_defaults(run=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from deband.video import VideoOptions, check_paths, deband_video
    from deband.video.jobs import ChunkOptions, deband_video_chunked

    try:
        opts = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, bit_depth=args.bit_depth,
                            start=args.start, duration=args.duration, compare=args.compare, batch=args.batch,
                            overwrite=args.overwrite, seed=args.seed, pipeline=args.pipeline)
        chunking = ChunkOptions(seconds=args.chunk, jobs=args.jobs, fresh=args.fresh)
    except ValueError as e:
        raise UsageError(f"deband video: {e}") from None
    _check_ray(args)
    if Path("-") in (args.input, args.output):
        return _cmd_pipe(args, opts)
    if args.input.is_dir():
        return _cmd_library(args, opts, chunking)
    check_paths(args.input, args.output, args.overwrite)  # before the model is loaded
    if args.ray is not None:
        from deband.cluster.video import deband_video_ray

        debander = load_debander(args, "cpu")  # the workers build their own
        with ray_cluster(args) as cluster:
            report = deband_video_ray(args.input, args.output, debander, opts, chunking, cluster, sys.stderr.isatty())
    elif args.only_banded is not None:
        debander = load_debander(args)  # a first pass finds the banded scenes; then one pass in order
        from deband.video.timeline import only_banded

        debander = only_banded(debander, args.input, args.only_banded, args.start, args.duration, sys.stderr.isatty())
        report = deband_video(args.input, args.output, debander, opts, progress=sys.stderr.isatty())
    else:
        report = deband_video_chunked(args.input, args.output, load_debander(args), opts, chunking,
                                      progress=sys.stderr.isatty())
    print(f"{args.output}: {report.frames_out} frames, {report.fps:.2f} frames/s")
    if report.skipped_packets:
        print(f"deband: warning: skipped {report.skipped_packets} corrupt packet(s)", file=sys.stderr)
    return 0


def _check_ray(args: argparse.Namespace) -> None:
    """--ray works on files and folders, in chunks; not with what needs this machine."""
    if args.ray is None:
        return
    if Path("-") in (args.input, args.output):
        raise UsageError("deband video: --ray works on files and folders, not on pipes")
    if args.only_banded is not None:
        raise UsageError("deband video: --only-banded runs in one pass here; it does not combine with --ray")
    if args.jobs != 1:
        raise UsageError("deband video: --jobs sets workers on this machine; with --ray the cluster decides")


def _cmd_pipe(args: argparse.Namespace, opts) -> int:
    """`deband video - -o -`: YUV4MPEG2 from stdin to stdout; messages go to stderr. When the
    reader of stdout goes away: one line and exit code BROKEN_PIPE (141, as for SIGPIPE)."""
    from deband.cli.exits import BROKEN_PIPE
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


def _cmd_library(args: argparse.Namespace, opts, chunking) -> int:
    """A folder: every video in it, then a summary table; the highest failure's exit code."""
    from deband.cli.exits import describe, exit_code, summarise
    from deband.errors import DebandError
    from deband.video.library import deband_library

    if args.ray is not None:
        from deband.cluster.video import deband_library_ray

        debander = load_debander(args, "cpu")  # the workers build their own
        with ray_cluster(args) as cluster:
            report = deband_library_ray(args.input, args.output, debander, opts, chunking, cluster,
                                        progress=sys.stderr.isatty())
    else:
        report = deband_library(args.input, args.output, load_debander(args), opts, chunking,
                                progress=sys.stderr.isatty())
    rows = [("done", src, f"{r.frames_out} frames, {r.fps:.2f} frames/s -> {dst}") for src, dst, r in report.done]
    rows += [("failed", src, describe(e) if isinstance(e, DebandError) else str(e)) for src, e in report.failed]
    rows += [("skipped", src, f"{dst} exists (--overwrite replaces it)") for src, dst in report.skipped]
    width = max(len(src.name) for _, src, _ in rows)
    for status, src, detail in rows:
        print(f"{status:8} {src.name:{width}}  {detail}")
    summarise(report, len(report.done), "video files")
    for _, e in report.failed:
        print(f"deband: error: {describe(e) if isinstance(e, DebandError) else e}", file=sys.stderr)
    return max((exit_code(e) for _, e in report.failed), default=0)
