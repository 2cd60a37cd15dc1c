"""`deband train`, `deband mix`, `deband eval`, `deband corpus build` and `deband corpus pack`: making and
measuring models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deband.cli.options import Parser, UsageError, check_device, fraction, int_range, positive
from deband.errors import InputError

EPILOG_TRAIN = """examples:
  deband train --out runs/mine                        train with the default config
  deband train --out runs/mine --resume               continue an interrupted run
  deband train --out runs/mine --folder ~/clean-pngs  add your own clean images
  deband train --out runs/tuned --init model.safetensors   fine-tune existing weights
  torchrun --nproc_per_node 2 -m deband.cli train --out runs/ddp   data-parallel
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train a model", epilog=EPILOG_TRAIN,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_options(tr)
    tr.set_defaults(run=cmd_train)
    st = sub.add_parser("train-stage", help="train a grid stage alone, the network frozen",
                        epilog="examples:\n"
                        "  deband train-stage --out runs/grid --config grid.json   a GridTrainConfig as JSON\n"
                        "  deband train-stage --out runs/grid --resume             continue an interrupted run\n"
                        "  deband train-stage --out runs/pl --config pl.json --init runs/grid/model.safetensors",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("--out", type=Path, required=True, help="the run folder")
    st.add_argument("--config", type=Path,
                    help="a GridTrainConfig as JSON (its pack, space, steps...); not with --resume")
    st.add_argument("--init", type=Path, help="the model whose network is frozen (default: the shipped one); "
                    "a stage of the other space that it has is kept")
    st.add_argument("--minutes", type=positive, help="stop, with a checkpoint, after this many minutes")
    st.add_argument("--resume", action="store_true", help="go on from the run folder's checkpoint")
    st.set_defaults(run=cmd_train_stage)
    mx = sub.add_parser("mix", help="interpolate two models' weights (a fine-tune and where it started)",
                        epilog="examples:\n"
                        "  deband mix start.safetensors tuned.safetensors --share 0.5 -o mixed.safetensors",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    mx.add_argument("a", type=Path, help="a .safetensors model")
    mx.add_argument("b", type=Path, help="a .safetensors model of the same config")
    mx.add_argument("--share", type=fraction, default=0.5,
                    help="weight of B, 0..1: (1 - share) * A + share * B (default 0.5)")
    mx.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors")
    mx.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    mx.set_defaults(run=cmd_mix)
    ev = sub.add_parser("eval", help="benchmark against FFmpeg's debanders; print Markdown tables",
                        epilog="examples:\n  deband eval\n"
                        "  deband eval --corpus CORPUS --n 8 --steps 2         CORPUS: a corpus folder\n"
                        "  deband eval --report benchmarks --reference FRAMES  FRAMES: a folder of banded-N.png",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--n", type=int_range(1, 1000), default=12,
                    help="crops per real-content set, images per faint-detail part and synthetic set (default 12)")
    ev.add_argument("--size", type=int_range(64, 4096), default=384, help="crop and synthetic image side (default 384)")
    ev.add_argument("--corpus", type=Path, help="corpus folder from `deband corpus build` (default: $DEBAND_CORPUS, "
                    "else ~/.cache/deband/corpus); its held-out images make the real-content sets")
    ev.add_argument("--steps", default="1,2,4,8,30", help="comma-separated INDI step counts")
    ev.add_argument("--reference", type=Path, help="folder of real banded-N.png (and seed-restored-N.png) frames")
    ev.add_argument("--json", type=Path, help="also write all numbers as JSON here")
    ev.add_argument("--markdown", type=Path, help="also write the tables as Markdown here (no figures)")
    ev.add_argument("--report", type=Path, help="write quality.md and its figures into this folder")
    ev.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    ev.set_defaults(run=cmd_eval)
    co = sub.add_parser("corpus", help="gather clean images from installed packages").add_subparsers(
        dest="corpus_command", required=True, parser_class=Parser)
    cb = co.add_parser("build", help="write a folder of 16-bit PNGs and its manifest.json",
                       epilog="examples:\n  deband corpus build CORPUS      CORPUS: the corpus folder to write\n"
                       "  deband corpus build out --source /usr/share/backgrounds --scale 3",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    cb.add_argument("out", type=Path, help="output folder (made if missing)")
    cb.add_argument("--source", type=Path, nargs="+", action="extend",
                    help="folders to scan (default: installed wallpapers and scikit-image's data)")
    cb.add_argument("--scale", type=int_range(2, 4), default=2, help="area-downscale factor (default 2)")
    cb.add_argument("--min-side", type=int_range(1, 65536), default=256,
                    help="skip images whose shorter side is smaller after downscaling (default 256)")
    cb.add_argument("--held-out", type=fraction, default=0.1, help="fraction held out, 0..1 (default 0.1)")
    cb.set_defaults(run=cmd_corpus)
    cp = co.add_parser("pack", help="write pre-cut clean crops of a corpus's train images into one .npz",
                       epilog="examples:\n  deband corpus pack pack.npz --corpus CORPUS --size 512 --n 112\n"
                       "(CORPUS: a corpus folder); then name pack.npz as the data config's \"corpus\" to train from it",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("out", type=Path, help="output .npz")
    cp.add_argument("--corpus", type=Path, required=True, help="a folder made by `deband corpus build`")
    cp.add_argument("--size", type=int_range(16, 4096), default=512, help="crop side in pixels (default 512)")
    cp.add_argument("--n", type=int_range(1, 100_000), default=40, help="number of crops (default 40)")
    cp.add_argument("--detailed", type=fraction, default=0.25,
                    help="share of crops taken where the image is most detailed, 0..1 (default 0.25)")
    cp.add_argument("--seed", type=int, default=0, help="where the crops fall (default 0)")
    cp.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    cp.set_defaults(run=cmd_pack)


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
    p.add_argument("--workers", type=int_range(0, 1024), default=0,
                   help="processes synthesising training pairs (0: this one)")
    p.add_argument("--minutes", type=positive,
                   help="fit the step count to this wall-clock budget (measured over warm-up)")


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
    from deband.training.loop import ConfigMismatchError, train

    try:
        train(train_config(args), args.out, args.resume, args.device, args.init, args.workers, args.minutes)
    except ConfigMismatchError as e:
        raise UsageError(f"{e}; pass a matching --config") from None
    return 0


def cmd_train_stage(args: argparse.Namespace) -> int:
    import json

    from deband.config import GridTrainConfig
    from deband.training.grid import train

    if args.resume == bool(args.config):
        raise UsageError("deband train-stage: give --config for a new run, or --resume for one in --out")
    if args.resume and not (args.out / "config.json").is_file():
        raise UsageError(f"deband train-stage: {args.out} holds no run to resume")
    cfg = GridTrainConfig()
    if args.config:
        try:
            cfg = GridTrainConfig(**json.loads(args.config.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise InputError(f"{args.config}: not a GridTrainConfig ({e})") from None
        if cfg.space not in ("rgb", "planes"):
            raise InputError(f"{args.config}: space must be 'rgb' or 'planes', not {cfg.space!r}")
    train(args.out, cfg, args.init, args.minutes, args.resume)
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    from deband.model.checkpoint import interpolate, load_model, save_weights

    mixed = interpolate(load_model(args.a), load_model(args.b), args.share)
    save_weights(mixed, args.output, {"mixed": f"{1 - args.share:g} x {args.a.name} + {args.share:g} x {args.b.name}"},
                 overwrite=args.overwrite)
    print(f"{args.output}: {1 - args.share:g} x {args.a} + {args.share:g} x {args.b}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from deband.evaluation.evaluate import REAL_MEAN, markdown, run_eval, save_json

    try:
        steps = tuple(int(v) for v in args.steps.split(","))
    except ValueError:
        raise UsageError(f"deband eval: --steps takes integers joined by commas, not {args.steps!r}") from None
    check_device(args.device)
    corpus = eval_corpus(args.corpus)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings at every encoder otherwise
    results = run_eval(str(args.weights) if args.weights else None, args.n, args.size, steps,
                       reference=args.reference, device=args.device, corpus=corpus)
    if corpus is not None and REAL_MEAN not in results:
        print(f"deband eval: real-content sets skipped: no window of {corpus}'s held-out images is "
              "mostly smooth gradient", file=sys.stderr)
    for name, rows in results.items():
        print(f"\n### {name}\n\n{markdown(rows)}")
    if args.json:
        save_json(results, args.json)
    if args.markdown:
        from deband.evaluation.evalreport import write_markdown

        write_markdown(results, args.markdown, "deband " + " ".join(sys.argv[1:]))
    if args.report:
        from deband.evaluation.evaluate import make_report

        command = "deband " + " ".join(sys.argv[1:])
        weights = str(args.weights) if args.weights else None
        path = make_report(results, args.report, command, weights, reference=args.reference)
        print(f"\nwrote {path}")
    return 0


def eval_corpus(folder: Path | None) -> Path | None:
    """The corpus `deband eval` uses, or None after one line saying why there is none."""
    from deband.data.manifest import corpus_folder
    from deband.evaluation.realsets import corpus_problem

    folder = corpus_folder(folder)
    problem = corpus_problem(folder)
    if problem is None:
        return folder
    print(f"deband eval: real-content sets skipped: {problem}; make one with "
          f"`deband corpus build {folder}` (or pass --corpus DIR)", file=sys.stderr)
    return None


def cmd_corpus(args: argparse.Namespace) -> int:
    from deband.data.corpus import CorpusConfig, build_corpus

    config = CorpusConfig(scale=args.scale, min_side=args.min_side, held_out=args.held_out)
    manifest = build_corpus(args.out, args.source, config)
    n = manifest["counts"]
    print(f"{args.out / 'manifest.json'}: {n['images']} images ({n['train']} train, "
          f"{n['held-out']} held-out), {n['skipped']} skipped")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from deband.data.pack import PackConfig, build_pack

    if args.out.suffix != ".npz":
        raise UsageError(f"deband corpus pack: OUT must end in .npz, got {args.out}")
    config = PackConfig(size=args.size, n=args.n, detailed=args.detailed, seed=args.seed)
    meta = build_pack(args.corpus, args.out, config, args.overwrite)
    images = len({c["file"] for c in meta["crops"]})
    print(f"{args.out}: {len(meta['crops'])} crops of {args.size} px from {images} train images, "
          f"{args.out.stat().st_size / 1e6:.1f} MB")
    return 0
