"""The `deband` command: parse, validate, call the library. Errors are one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from deband.config import DEFAULT_STEPS
from deband.errors import OUTPUT, RESOURCES, UNREADABLE, USAGE, DebandError, InputError, OutputError

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


PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code USAGE
        raise DebandError(f"{self.prog}: {message}", USAGE)


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
    _add_export_parser(sub)
    from deband.train import add_arguments as add_train_arguments

    tr = sub.add_parser("train", help="train a model", epilog=EPILOG_TRAIN,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(tr)
    return p


EPILOG_EXPORT = """examples:
  deband export onnx deband.onnx                        2 steps, float32 RGB in and out
  deband export onnx deband-fp16.onnx --fp16 --steps 4  float16 in and out (RGBH clips)
"""


def _add_export_parser(sub) -> None:
    ex = sub.add_parser("export", help="write the restorer for other runtimes")
    fmt = ex.add_subparsers(dest="format", required=True, parser_class=_Parser)
    onnx = fmt.add_parser("onnx", help="one ONNX graph: RGB on [0, 1] in and out, any size (vs-mlrt)",
                          epilog=EPILOG_EXPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    onnx.add_argument("output", type=Path, help="the .onnx file to write")
    onnx.add_argument("--steps", type=_int_range(1, 100), default=DEFAULT_STEPS,
                      help=f"INDI steps, unrolled into the graph (default {DEFAULT_STEPS})")
    onnx.add_argument("--strength", type=_strength, default=1.0, help="0 < S <= 1: start time t (default 1)")
    onnx.add_argument("--fp16", action="store_true", help="float16 input and output (float32 inside)")
    onnx.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    onnx.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _debander(args: argparse.Namespace):
    from deband.checkpoint import WeightsError
    from deband.restore import Debander

    try:
        return Debander.load(args.weights, args.device, steps=args.steps, strength=args.strength,
                             tile=args.tile, overlap=min(256, args.tile // 4), seed=args.seed,
                             bars=not args.restore_bars)
    except WeightsError as e:
        raise DebandError(str(e), UNREADABLE) from None
    except RuntimeError as e:
        raise DebandError(str(e), USAGE) from None


def cmd_image(args: argparse.Namespace) -> int:
    from deband.images import ImageOptions, run_batch
    from deband.io import DEFAULT_MAX_PIXELS, list_inputs

    inputs = list_inputs(args.inputs)
    if not inputs:
        raise DebandError("no images found in the given folders", UNREADABLE)
    opts = ImageOptions(bit_depth=args.bit_depth, suffix="." + args.format, overwrite=args.overwrite,
                        compare=args.compare, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    report = run_batch(inputs, args.output, _debander(args), opts, progress=sys.stderr.isatty())
    for path in report.written:
        print(path)
    if report.failed:
        for _, err in report.failed:
            print(f"deband: error: {err}", file=sys.stderr)
        if len(inputs) > 1:
            print(f"deband: {len(report.failed)} of {len(inputs)} images failed", file=sys.stderr)
        return max(err.code for _, err in report.failed)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from deband.video import VideoError, VideoOptions, deband_video

    try:
        opts = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, bit_depth=args.bit_depth,
                            start=args.start, duration=args.duration, compare=args.compare, batch=args.batch,
                            overwrite=args.overwrite, seed=args.seed)
    except ValueError as e:
        raise DebandError(f"deband video: {e}", USAGE) from None
    if args.output.exists() and not args.overwrite:
        raise DebandError(f"{args.output}: already exists (use --overwrite to replace it)", OUTPUT)
    debander = _debander(args)
    try:
        report = deband_video(args.input, args.output, debander, opts, progress=sys.stderr.isatty())
    except FileNotFoundError:
        raise DebandError(f"{args.input}: no such file", UNREADABLE) from None
    except FileExistsError:
        raise DebandError(f"{args.output}: already exists (use --overwrite to replace it)", OUTPUT) from None
    except VideoError as e:  # its message starts with the input's name
        raise DebandError(str(e), e.code) from None
    except ValueError as e:
        raise DebandError(f"{args.output}: {e}", OUTPUT) from None
    except OSError as e:  # writing failed (disk full, no permission): name dst, not its temp file
        raise DebandError(f"{args.output}: write failed ({e.strerror or e})", OUTPUT) from None
    print(f"{args.output}: {report.frames_out} frames, {report.fps:.2f} frames/s")
    if report.skipped_packets:
        print(f"deband: warning: skipped {report.skipped_packets} corrupt packet(s)", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from deband.evaluate import as_dicts, markdown, run_eval

    try:
        steps = tuple(int(v) for v in args.steps.split(","))
    except ValueError:
        raise DebandError(f"deband eval: --steps takes integers joined by commas, not {args.steps!r}", USAGE) from None
    results = run_eval(str(args.weights) if args.weights else None, args.n, args.size, steps,
                       reference=args.reference, device=args.device)
    for name, rows in results.items():
        print(f"\n### {name}\n\n{markdown(rows)}")
    if args.json:
        import json

        args.json.write_text(json.dumps({k: as_dicts(v) for k, v in results.items()}, indent=1))
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


def cmd_export(args: argparse.Namespace) -> int:
    from deband.export import export_onnx

    try:
        path = export_onnx(args.output, args.steps, args.strength, args.fp16, args.weights, overwrite=args.overwrite)
    except DebandError as e:  # TRANSITIONAL: typed errors carry no exit code until main maps them
        e.code = e.code or (OUTPUT if isinstance(e, OutputError) else UNREADABLE if isinstance(e, InputError) else 1)
        raise
    except ValueError as e:
        raise DebandError(f"deband export onnx: {e}", USAGE) from None
    print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from deband.train import config_from_args, train

    train(config_from_args(args), args.out, args.resume, args.device, args.init, args.workers, args.minutes)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit becomes an OSError we report, not a crash
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    debug = "--debug" in argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = build_parser().parse_args(argv)
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
        if args.command == "export":
            return cmd_export(args)
        raise DebandError(f"unknown command {args.command}", USAGE)
    except DebandError as e:
        if debug:
            raise
        print(f"deband: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("deband: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except MemoryError:
        print("deband: error: out of memory (try a smaller --tile)", file=sys.stderr)
        return RESOURCES
    except OSError as e:
        if debug:
            raise
        print(f"deband: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return OUTPUT


if __name__ == "__main__":
    raise SystemExit(main())
