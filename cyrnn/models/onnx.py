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
# Nodes never folded into constants even when all their inputs are constants.
_NOT_FOLDED = {"RNN", "LSTM", "GRU", "Loop", "If", "Scan", "RandomNormal", "RandomUniform",
               "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
_NO_RECURRENT_NODE = (
    "the ONNX graph has no RNN, LSTM or GRU node (PyTorch's default exporter, "
    "torch.onnx.export(..., dynamo=True), writes nn.RNN as MatMul and Tanh nodes unrolled "
    "over the example input's length: export it with dynamo=False, or read the module "
    "with models.from_torch)")


def from_onnx(model_or_path, *, head=None):
    """A Model with the weights of an ONNX graph's RNN/LSTM/GRU nodes (an
    onnx.ModelProto, a path or the file's bytes; needs the `onnx` package:
    `pip install "cyrnn[onnx]"`). The recurrent nodes, in graph order, are the
    stack's layers, each 'forward' or 'bidirectional'; the other nodes may only
    move data (what exporters such as torch.onnx put between layers). GRU nodes
    with linear_before_reset=1 are the reset-after variant, 0 reset-before.
    Inputs are always (n_x, m, T), whatever the node's layout; initial states
    and sequence_lens are call arguments (`initial_state`, `lengths`).
    Weights may be computed from constants by other nodes (PyTorch's default
    exporter slices and concatenates the module's tensors): those subgraphs are
    evaluated once with onnx's reference evaluator. Constant initial states must
    be zeros. Unsupported, each a ValueError naming it: peepholes, clip,
    input_forget, activations other than the defaults, direction='reverse'
    alone, weights computed from the graph's inputs, nodes computing on data."""
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
    recurrent = [node for node in graph.node if node.op_type in _ONNX_CELLS]
    if not recurrent:
        raise ValueError(_NO_RECURRENT_NODE)
    folded, shapes = _static_nodes(graph)
    wanted = {name for node in recurrent for name in node.input[1:] if name}
    constants = _fold(onnx, obj, folded, wanted)
    layers, cells = [], set()
    for node in graph.node:
        if node.op_type in _ONNX_CELLS:
            cell = _ONNX_CELLS[node.op_type]
            cells.add(cell)
            layers.append(_onnx_layer(cell, node, constants, onnx.helper))
        elif node.op_type not in _ONNX_LAYOUT_OPS and \
                not all(name in folded or name in shapes for name in node.output):
            raise ValueError(f"ONNX node {node.name!r} ({node.op_type}) is not supported: "
                             f"from_onnx reads RNN/LSTM/GRU nodes, the data moves "
                             f"between them ({', '.join(sorted(_ONNX_LAYOUT_OPS))}) and "
                             f"nodes that compute from constants and shapes only")
    if len(cells) != 1:
        raise ValueError(f"the ONNX graph mixes cells {sorted(cells)}; a Model has one kind")
    return Model(cells.pop(), layers, head)


def _static_nodes(graph):
    """The nodes that compute from constants and shapes only: ({output name: node}
    of those whose inputs are all constants — initializers, Constant nodes or
    outputs of such nodes; exporters compute the stacked weights so, from the
    framework's own tensors — and the names computed from tensors' shapes)."""
    constant = {t.name for t in graph.initializer}
    folded, shapes = {}, set()
    for node in graph.node:
        if node.op_type in _NOT_FOLDED or node.domain not in ("", "ai.onnx"):
            continue
        inputs = [name for name in node.input if name]
        if all(name in constant for name in inputs):
            constant.update(node.output)
            folded.update((name, node) for name in node.output)
        elif node.op_type in ("Shape", "Size") or \
                all(name in constant or name in shapes for name in inputs):
            shapes.update(node.output)
    return folded, shapes


def _fold(onnx, model, folded, wanted):
    """The values of the wanted names that are constants, the folded ones
    evaluated once by onnx's reference evaluator (only the nodes they need)."""
    graph = model.graph
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    to_compute = [name for name in sorted(wanted) if name in folded and name not in values]
    if not to_compute:
        return values
    needed, stack = set(), list(to_compute)
    while stack:
        node = folded.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(name for name in node.input if name)
    nodes = [node for node in graph.node if id(node) in needed]
    h = onnx.helper
    subgraph = h.make_graph(nodes, "constants", [],
                            [h.make_empty_tensor_value_info(name) for name in to_compute],
                            initializer=graph.initializer)
    submodel = h.make_model(subgraph, opset_imports=model.opset_import,
                            functions=model.functions, ir_version=model.ir_version)
    from onnx.reference import ReferenceEvaluator
    values.update(zip(to_compute, ReferenceEvaluator(submodel).run(None, {})))
    return values


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
    for index, name in ((5, "initial_h"), (6, "initial_c")):
        # what exporters write when the module is called without states: zeros
        given = node.input[index] if len(node.input) > index else ""
        if given in constants and np.any(constants[given]):
            raise ValueError(f"{what}: its input {name} ({given!r}) is a nonzero constant; "
                             "a Model starts from the states passed as initial_state "
                             "(zeros when none are)")
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
