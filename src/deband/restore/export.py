"""The whole restorer as one ONNX graph, for ONNX Runtime and VapourSynth's vs-mlrt.

The graph holds the INDI steps (`deband.model.indi.sample`) unrolled, their times baked in, around
the network (`deband.model.unet.UNet`), which pads its input to `ModelConfig.multiple` by edge
replication and crops back inside the graph. It takes and returns one image:

    input  (1, 3, height, width), float32 (float16 with fp16), RGB on [0, 1]
    output (1, 3, height, width), the same type, RGB on [0, 1]

Height and width are dynamic and every reshape depends only on them, never on pixel values,
so a runtime can run the graph on tiles of any size. The detail guard (`deband.restore.guard`) is in
the graph unless exported without it; a runtime that tiles the image measures its windows
per tile. Letterbox detection (`deband.restore.letterbox`) depends on the pixels and stays out: the
graph restores the whole frame, as `--restore-bars`.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from deband.errors import DebandError, SettingError
from deband.io.outputs import atomic_output, check_output
from deband.model.checkpoint import DEFAULT_WEIGHTS, load_model
from deband.model.indi import sample
from deband.restore.debander import check_sampling
from deband.restore.guard import Guard

DEFAULT_OPSET = 17  # ONNX Runtime >= 1.11, TensorRT >= 8.6 and OpenVINO read it
INPUT_NAME, OUTPUT_NAME = "input", "output"


class Restorer(nn.Module):
    """`Debander`'s arithmetic on one whole image: clamp, INDI from t = strength to 0, clamp,
    then the detail guard (none when `guard` is None).

    forward(y): y (Tensor) shape (1, 3, h, w), range [0, 1], float32 or float16.
    Returns the restored image, the same shape and dtype; the network runs in float32.
    """

    def __init__(self, model: nn.Module, steps: int, strength: float, guard: Guard | None = None):
        super().__init__()
        self.model, self.steps, self.strength, self.guard = model, steps, strength, guard

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = (y.float() if y.dtype != torch.float32 else y).clamp(0, 1)
        out = sample(self.model, x, self.steps, self.strength).clamp(0, 1)
        out = self.guard(x, out) if self.guard is not None else out
        return out.to(y.dtype) if y.dtype != torch.float32 else out


def check_settings(steps: int, strength: float, opset: int) -> None:
    """Raise SettingError naming the first setting out of range (steps and strength as a
    `Debander` checks them)."""
    check_sampling(steps, strength)
    if not 13 <= opset <= 20:
        raise SettingError("opset", f"must be between 13 and 20, got {opset}")


def _example(multiple: int, dtype: torch.dtype) -> torch.Tensor:
    """A tracing input whose sides are not multiples of `multiple`.

    The trace records the network's pad-and-crop branch only when it is taken; with it the
    graph handles every size (a pad of zero included).
    """
    return torch.rand(1, 3, multiple + 3, multiple + 11).to(dtype)


def _trace_to(path: Path, module: nn.Module, example: torch.Tensor, opset: int) -> None:
    """TorchScript-trace `module` to ONNX with dynamic height and width (no network access)."""
    dims = {2: "height", 3: "width"}
    with warnings.catch_warnings():
        # the tracer warns about the branches it fixes (pad or not, noise or not), which
        # `_example` chooses; constant folding warns about strided slices it leaves alone
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=re.escape("Constant folding"))
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dims, OUTPUT_NAME: dims}, do_constant_folding=True,
        )  # fmt: skip


def _softmax_nodes(node, opset: int) -> list:
    """A Softmax over an inner axis as max, exp, sum and divide: the same values, and
    ONNX Runtime's CPU kernel for an inner axis of 7 (the blend's candidates) is slow."""
    from onnx import helper

    axis = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "axis")
    x, y, p = node.input[0], node.output[0], node.output[0] + "/decomposed"
    axes = helper.make_tensor(p + "/axes", 7, [1], [axis])  # int64
    if opset >= 18:
        peak = helper.make_node("ReduceMax", [x, p + "/axes"], [p + "/max"], keepdims=1)
    else:
        peak = helper.make_node("ReduceMax", [x], [p + "/max"], axes=[axis], keepdims=1)
    return [
        helper.make_node("Constant", [], [p + "/axes"], value=axes),
        peak,
        helper.make_node("Sub", [x, p + "/max"], [p + "/shifted"]),
        helper.make_node("Exp", [p + "/shifted"], [p + "/exp"]),
        helper.make_node("ReduceSum", [p + "/exp", p + "/axes"], [p + "/sum"], keepdims=1),
        helper.make_node("Div", [p + "/exp", p + "/sum"], [y]),
    ]


def _finish_graph(path: Path, opset: int, props: dict[str, str]) -> None:
    """Decompose inner-axis Softmax (`_softmax_nodes`), state the output's shape as
    (1, 3, height, width), like the input's (the tracer leaves the output's batch and
    channels unnamed, and runtimes read the channel count from it), and record `props`."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, props)
    nodes = []
    for node in model.graph.node:
        inner = node.op_type == "Softmax" and any(a.name == "axis" and a.i != -1 for a in node.attribute)
        nodes.extend(_softmax_nodes(node, opset) if inner else [node])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, "height", "width")):
        dim.Clear()
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _props(steps: int, strength: float, fp16: bool, weights: str | Path | None, guard: bool) -> dict[str, str]:
    """What the graph does, as ONNX metadata: `deband.steps`, `deband.strength`, ..."""
    return {
        "deband.guard": "on" if guard else "off",
        "deband.steps": str(steps),
        "deband.strength": repr(float(strength)),
        "deband.io": "float16 RGB on [0, 1]" if fp16 else "float32 RGB on [0, 1]",
        "deband.weights": Path(weights).name if weights is not None else DEFAULT_WEIGHTS.name,
        "deband.letterbox": "not detected: the whole frame is restored",
    }


def export_onnx(
    path: str | Path,
    steps: int = 2,
    strength: float = 1.0,
    fp16: bool = False,
    weights: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    guard: bool = True,
) -> Path:
    """Write the restorer (`steps` INDI steps from t = `strength`) to `path` as one ONNX graph.

    fp16: the input and output are float16 (the arithmetic inside stays float32). guard: the
    detail guard (`deband.restore.guard`) ends the graph. weights: a
    .safetensors model, the shipped one when None. Written atomically; an existing `path` is
    replaced only with `overwrite`. Raises SettingError for settings out of range, InputError
    for unreadable weights, DebandError without the onnx package and the errors of
    `deband.io.outputs.atomic_output`. Returns `path`.
    """
    check_settings(steps, strength, opset)
    if importlib.util.find_spec("onnx") is None:
        raise DebandError("exporting to ONNX needs the onnx package: pip install 'deband[onnx]'")
    check_output(path, overwrite)  # before the slow part; atomic_output checks again
    model = load_model(weights)  # InputError when unreadable
    restorer = Restorer(model.float().eval(), steps, strength, Guard() if guard else None)
    example = _example(model.config.multiple, torch.float16 if fp16 else torch.float32)
    with atomic_output(path, overwrite) as tmp, torch.no_grad():
        _trace_to(tmp, restorer, example, opset)
        _finish_graph(tmp, opset, _props(steps, strength, fp16, weights, guard))
    return Path(path)
