"""`deband export onnx`: the restorer as one graph for other runtimes (vs-mlrt, ONNX Runtime)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deband.cli.options import Parser, sampling
from deband.config import DEFAULT_STEPS

EPILOG_EXPORT = """examples:
  deband export onnx deband.onnx                        2 steps, float32 RGB in and out
  deband export onnx deband-fp16.onnx --fp16 --steps 4  float16 in and out (RGBH clips)
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="write the restorer for other runtimes")
    fmt = ex.add_subparsers(dest="format", required=True, parser_class=Parser)
    onnx = fmt.add_parser("onnx", help="one ONNX graph: RGB on [0, 1] in and out, any size (vs-mlrt)",
                          epilog=EPILOG_EXPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    onnx.add_argument("output", type=Path, help="the .onnx file to write")
    onnx.add_argument("--steps", type=sampling("steps"), default=DEFAULT_STEPS,
                      help=f"INDI steps, 1-100, unrolled into the graph (default {DEFAULT_STEPS})")
    onnx.add_argument("--strength", type=sampling("strength"), default=1.0, help="0 < S <= 1: start time t (default 1)")
    onnx.add_argument("--fp16", action="store_true", help="float16 input and output (float32 inside)")
    onnx.add_argument("--no-guard", action="store_true", help="leave the detail guard out of the graph")
    onnx.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    onnx.add_argument("--overwrite", action="store_true", help="replace an existing file")
    onnx.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from deband.restore.export import export_onnx

    path = export_onnx(args.output, args.steps, args.strength, args.fp16, args.weights,
                       overwrite=args.overwrite, guard=not args.no_guard)
    print(path)
    return 0
