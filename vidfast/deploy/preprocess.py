"""The preprocessing graph: raw uint8 frames of any size (input ``rgb_uint8``) -> the network's normalised
clip, as plain ONNX nodes.

It does what the evaluation crop of the training pipeline does (``uniform_clips`` / ``center_clip`` through
``cube_crop``): the central square of the short side, ``s = min(H, W)`` at ``((H - s) // 2, (W - s) // 2)``,
resized bilinearly to the clip's ``h x w`` with half-pixel centres and no antialiasing (``cube_crop`` and
``F.interpolate(align_corners=False, antialias=False)``: ONNX ``Resize`` mode ``linear``, coordinate mode
``half_pixel``, sampling points clamped to the edge), then ``(v / 255 - mean) / std`` as one multiply-add
with float32 constants rounded from double (:func:`vidfast.conventions.normalising_affine`). Only the
resampling weights' float rounding differs from ``cube_crop`` (its ``in / out`` scale vs onnxruntime's
``out / in``): about 1e-5 of a normalised value.

``vidfast export --with-preprocess`` prepends it to the network (:func:`prepend_preprocess_graph`); the
torch-free runtime runs it alone in front of graphs that take float clips (:func:`preprocess_graph`). Needs
the ``onnx`` package, not torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidfast.conventions import normalising_affine

RGB_INPUT = "rgb_uint8"
CLIP_OUTPUT = "clip"
#: first opset whose ``Resize`` takes ``sizes`` (the preprocessing graph's lowest)
MIN_OPSET = 11
_PREFIX = "vidfast_preprocess/"


def _nodes_and_constants(clip: tuple[int, int, int], mean: Sequence[float], std: Sequence[float],
                         rgb: str, out: str):
    """Nodes and initializers that turn ``rgb`` uint8 ``[N, T, H, W, 3]`` into ``out`` float
    ``[N, 3, T, h, w]``; names of intermediate values carry :data:`_PREFIX`."""
    from onnx import TensorProto, helper, numpy_helper

    _, h, w = clip
    p = _PREFIX
    scale, bias = normalising_affine(mean, std)
    constants = {
        "i0": np.array([0], np.int64), "i2": np.array([2], np.int64), "i3": np.array([3], np.int64),
        "i4": np.array([4], np.int64), "two": np.array([2], np.int64), "axes_hw": np.array([2, 3], np.int64),
        "minus1_3": np.array([-1, 3], np.int64), "c3hw": np.array([3, h, w], np.int64),
        "scale": np.array(scale, np.float32).reshape(3, 1, 1, 1),
        "bias": np.array(bias, np.float32).reshape(3, 1, 1, 1),
    }
    initializers = [numpy_helper.from_array(v, p + k) for k, v in constants.items()]
    c = {k: p + k for k in constants}

    def node(op: str, inputs: list[str], output: str, **attrs):
        return helper.make_node(op, inputs, [output], name=output, **attrs)

    nodes = [
        node("Shape", [rgb], p + "shape"),  # [N, T, H, W, 3]
        node("Slice", [p + "shape", c["i2"], c["i3"]], p + "H"),
        node("Slice", [p + "shape", c["i3"], c["i4"]], p + "W"),
        node("Min", [p + "H", p + "W"], p + "side"),
        node("Sub", [p + "H", p + "side"], p + "H_margin"),
        node("Div", [p + "H_margin", c["two"]], p + "y0"),  # integer division of non-negatives: floor
        node("Sub", [p + "W", p + "side"], p + "W_margin"),
        node("Div", [p + "W_margin", c["two"]], p + "x0"),
        node("Concat", [p + "y0", p + "x0"], p + "starts", axis=0),
        node("Add", [p + "starts", p + "side"], p + "ends"),
        node("Slice", [rgb, p + "starts", p + "ends", c["axes_hw"]], p + "square"),  # [N, T, s, s, 3]
        node("Transpose", [p + "square"], p + "square_chw", perm=[0, 1, 4, 2, 3]),  # [N, T, 3, s, s]
        node("Concat", [c["minus1_3"], p + "side", p + "side"], p + "images_shape", axis=0),
        node("Reshape", [p + "square_chw", p + "images_shape"], p + "images_u8"),  # [N * T, 3, s, s]
        node("Cast", [p + "images_u8"], p + "images", to=TensorProto.FLOAT),
        node("Slice", [p + "shape", c["i0"], c["i2"]], p + "NT"),
        node("ReduceProd", [p + "NT"], p + "NT_prod", keepdims=1),
        node("Concat", [p + "NT_prod", c["c3hw"]], p + "resized_shape", axis=0),
        node("Resize", [p + "images", "", "", p + "resized_shape"], p + "resized", mode="linear",
             coordinate_transformation_mode="half_pixel"),  # [N * T, 3, h, w]
        node("Concat", [p + "NT", c["c3hw"]], p + "clip_shape", axis=0),
        node("Reshape", [p + "resized", p + "clip_shape"], p + "clip_tchw"),  # [N, T, 3, h, w]
        node("Transpose", [p + "clip_tchw"], p + "clip_raw", perm=[0, 2, 1, 3, 4]),  # [N, 3, T, h, w]
        node("Mul", [p + "clip_raw", c["scale"]], p + "scaled"),
        node("Add", [p + "scaled", c["bias"]], out),
    ]
    return nodes, initializers


def preprocess_graph(clip: tuple[int, int, int], mean: Sequence[float], std: Sequence[float],
                 opset: int = 18, ir_version: int | None = None):
    """A standalone ``onnx.ModelProto``: input ``rgb_uint8`` uint8 ``[N, T, H, W, 3]`` (any N, H, W; T the
    clip's) -> output ``clip`` float ``[N, 3, T, h, w]`` (``clip = (T, h, w)``; ``mean``/``std`` unit
    values, see :attr:`vidfast.conventions.Convention.unit_mean`)."""
    from onnx import TensorProto, helper

    if opset < MIN_OPSET:
        raise ValueError(f"the preprocessing graph needs opset {MIN_OPSET} or newer, got {opset}")
    t, h, w = clip
    nodes, initializers = _nodes_and_constants(clip, mean, std, RGB_INPUT, CLIP_OUTPUT)
    graph = helper.make_graph(
        nodes, "vidfast_preprocess", [_rgb_input(t)],
        [helper.make_tensor_value_info(CLIP_OUTPUT, TensorProto.FLOAT, ["batch", 3, t, h, w])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    return model


def _rgb_input(t: int, batch: int | str = "batch"):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(RGB_INPUT, TensorProto.UINT8, [batch, t, "height", "width", 3])


def prepend_preprocess_graph(model, mean: Sequence[float], std: Sequence[float]) -> None:
    """Make ``model`` (an ``onnx.ModelProto`` whose one input is a float ``[N, 3, T, h, w]`` clip with a
    static ``T, h, w``) take ``rgb_uint8`` uint8 ``[N, T, H, W, 3]`` of any ``H, W`` instead, in place."""
    graph = model.graph
    (clip_input,) = graph.input
    shape = clip_input.type.tensor_type.shape.dim
    dims = [d.dim_value for d in shape]
    if len(dims) != 5 or min(dims[1:]) < 1 or dims[1] != 3:
        raise ValueError(f"the network input must be [N, 3, T, h, w] with static T, h, w, got {dims}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < MIN_OPSET:
        raise ValueError(f"in-graph preprocessing needs opset {MIN_OPSET} or newer, got {opset}")
    clip = (dims[2], dims[3], dims[4])
    nodes, initializers = _nodes_and_constants(clip, mean, std, RGB_INPUT, clip_input.name)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.append(_rgb_input(clip[0], shape[0].dim_param or shape[0].dim_value))
