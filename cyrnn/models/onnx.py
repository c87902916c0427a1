"""ONNX: a graph's RNN/LSTM/GRU nodes to a Model."""
import numpy as np

from cyrnn.models.convert import _GATES, _direction
from cyrnn.models.model import Model

# ONNX's order of the gate blocks in its stacked weights (see convert._direction).
_ONNX_ORDER = {"rnn": "", "lstm": "iofc", "gru": "zrn"}

_ONNX_CELLS = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
_ONNX_ACTIVATIONS = {"rnn": ["Tanh"], "lstm": ["Sigmoid", "Tanh", "Tanh"],
                     "gru": ["Sigmoid", "Tanh"]}
# What exporters put between stacked recurrent nodes: shapes, layouts, the
# initial states' zeros. Any other node would compute something the Model does not.
_ONNX_LAYOUT_OPS = {"Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Squeeze",
                    "Concat", "Expand", "Transpose", "Reshape", "Identity", "Cast", "Slice"}


def from_onnx(model_or_path, *, head=None):
    """A Model with the weights of an ONNX graph's RNN/LSTM/GRU nodes (an
    onnx.ModelProto, a path or the file's bytes; needs the `onnx` package:
    `pip install "cyrnn[onnx]"`). The recurrent nodes, in graph order, are the
    stack's layers, each 'forward' or 'bidirectional'; the other nodes may only
    move data (what exporters such as torch.onnx put between layers). GRU nodes
    with linear_before_reset=1 are the reset-after variant, 0 reset-before.
    Inputs are always (n_x, m, T), whatever the node's layout; initial states
    and sequence_lens are call arguments (`initial_state`, `lengths`).
    Unsupported, each a ValueError naming it: peepholes, clip, input_forget,
    activations other than the defaults, direction='reverse' alone, weights
    that are not constants of the graph."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError('from_onnx needs the onnx package: pip install "cyrnn[onnx]"') \
            from error
    obj = model_or_path
    if isinstance(obj, (bytes, bytearray)):
        obj = onnx.load_from_string(bytes(obj))
    elif not hasattr(obj, "graph"):
        obj = onnx.load(obj)
    graph = obj.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    layers, cells = [], set()
    for node in graph.node:
        if node.op_type in _ONNX_CELLS:
            cell = _ONNX_CELLS[node.op_type]
            cells.add(cell)
            layers.append(_onnx_layer(cell, node, constants, onnx.helper))
        elif node.op_type not in _ONNX_LAYOUT_OPS:
            raise ValueError(f"ONNX node {node.name!r} ({node.op_type}) is not supported: "
                             f"from_onnx reads RNN/LSTM/GRU nodes and the data moves "
                             f"between them ({', '.join(sorted(_ONNX_LAYOUT_OPS))})")
    if not layers:
        raise ValueError("the ONNX graph has no RNN, LSTM or GRU node")
    if len(cells) != 1:
        raise ValueError(f"the ONNX graph mixes cells {sorted(cells)}; a Model has one kind")
    return Model(cells.pop(), layers, head)


def _onnx_layer(cell, node, constants, helper):
    what = f"ONNX {node.op_type} node {node.name!r}"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{what} has direction={direction!r}; only 'forward' and "
                         "'bidirectional' are supported (a Model's reverse direction "
                         "comes with a forward one)")
    directions = 2 if direction == "bidirectional" else 1
    activations = [a.decode() if isinstance(a, bytes) else a
                   for a in attrs.get("activations", [])]
    if activations and activations != _ONNX_ACTIVATIONS[cell] * directions:
        raise ValueError(f"{what} has activations={activations}; only the defaults "
                         f"{_ONNX_ACTIVATIONS[cell] * directions} are supported")
    if "clip" in attrs:
        raise ValueError(f"{what} has clip={attrs['clip']}; cell clipping is not supported")
    if attrs.get("input_forget", 0):
        raise ValueError(f"{what} has input_forget=1 (coupled gates); not supported")

    def constant(index, name):
        if len(node.input) <= index or not node.input[index]:
            return None
        if node.input[index] not in constants:
            raise ValueError(f"{what}: its input {name} ({node.input[index]!r}) is not a "
                             "constant of the graph (an initializer or Constant node)")
        return constants[node.input[index]]

    if cell == "lstm" and len(node.input) > 7 and node.input[7]:
        raise ValueError(f"{what} has peepholes (input P); not supported")
    W, R, B = constant(1, "W"), constant(2, "R"), constant(3, "B")
    if W is None or R is None:
        raise ValueError(f"{what} has no weights W and R")
    n_a = attrs.get("hidden_size", R.shape[-1])
    rows = _GATES[cell] * n_a
    if B is None:
        B = np.zeros((directions, 2 * rows), R.dtype)
    for name, array, shape in (("W", W, (directions, rows, W.shape[-1])),
                               ("R", R, (directions, rows, n_a)),
                               ("B", B, (directions, 2 * rows))):
        if array.shape != shape:
            raise ValueError(f"{what}: {name} has shape {array.shape}; expected {shape} "
                             f"(direction={direction!r}, hidden_size={n_a})")
    reset_after = bool(attrs.get("linear_before_reset", 0))
    return [_direction(cell, n_a, W[d], R[d], B[d, :rows], B[d, rows:], _ONNX_ORDER[cell],
                       reset_after=reset_after) for d in range(directions)]
