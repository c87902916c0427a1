"""cyrnn.models.from_keras and from_onnx (docs/contract.md §7) against the real
frameworks: Keras 3 layers (torch backend) called on the same inputs and masks,
ONNX graphs run by onnxruntime (float32) and by onnx's reference evaluator
(float64), and graphs exported from PyTorch modules by torch.onnx."""
import contextlib
import io
import os
import warnings

import numpy as np
import pytest

from cyrnn import models
from problems import assert_close, require_peer

TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=1e-5, atol=1e-5)}
# Keras 3 computes ops.matmul of float64 operands in float32 (its dtype rules
# map 64-bit results to 32-bit, like JAX's default), so a float64 Keras layer is
# only float32-accurate: float64 models are checked to float32's accuracy there.
KERAS_TOL = {np.float64: dict(rtol=1e-6, atol=1e-6), np.float32: dict(rtol=1e-5, atol=1e-5)}
LENGTHS = np.array([9, 1, 4, 9, 2, 7])


def keras():
    # The torch backend: no TensorFlow install is needed for these tests.
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return require_peer("keras", "from_keras is checked against Keras 3's own layers")


def onnx():
    return require_peer("onnx", "from_onnx reads ONNX graphs")


def onnxruntime():
    return require_peer("onnxruntime", "from_onnx is checked against onnxruntime")


# ------------------------------------------------------------------- Keras

def keras_layer(k, cell, n_a, dtype, reset_after=True):
    kwargs = dict(return_sequences=True, return_state=True, dtype=np.dtype(dtype).name)
    if cell == "rnn":
        return k.layers.SimpleRNN(n_a, **kwargs)
    if cell == "lstm":
        return k.layers.LSTM(n_a, **kwargs)
    return k.layers.GRU(n_a, reset_after=reset_after, **kwargs)


def randomize(layer, rng):
    """Weights and biases uniform in ±0.6 (Keras initialises biases to 0)."""
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype)
                       for w in layer.get_weights()])


def run_keras(k, stack, x, lengths):
    """Calls each layer on the previous one's outputs; (outputs, [final states])."""
    h = x.transpose(1, 2, 0)                               # Keras: (m, T, n_x)
    mask = None if lengths is None else np.arange(x.shape[2]) < lengths[:, None]
    finals = []
    for layer in stack:
        out = layer(h, mask=mask)
        h, states = out[0], [k.ops.convert_to_numpy(s) for s in out[1:]]
        finals.append(states)
    return k.ops.convert_to_numpy(h).transpose(2, 0, 1), finals


@pytest.mark.parametrize("cell, reset_after", [("rnn", True), ("lstm", True), ("gru", True),
                                               ("gru", False)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_keras_layers_match_keras(cell, reset_after, bidirectional, dtype, with_lengths):
    k = keras()
    n_x, n_a, m, T = 5, 7, 6, 9
    rng = np.random.default_rng(3)
    stack = []
    for n_in in (n_x, n_a * (1 + bidirectional)):          # two stacked layers
        layer = keras_layer(k, cell, n_a, dtype, reset_after)
        if bidirectional:
            layer = k.layers.Bidirectional(layer, dtype=np.dtype(dtype).name)
        layer.build((None, T, n_in))
        randomize(layer, rng)
        stack.append(layer)
    x = rng.standard_normal((n_x, m, T)).astype(dtype)
    lengths = LENGTHS if with_lengths else None
    want, finals = run_keras(k, stack, x, lengths)
    model = models.from_keras(stack)
    assert model.dtype == dtype and model.num_layers == 2
    assert model.bidirectional == bidirectional
    out, final = model(x, lengths=lengths)
    tol = KERAS_TOL[dtype]
    if lengths is None:
        assert_close(out, want, **tol)
    else:    # Keras's outputs past a column's length are not defined as 0
        valid = np.arange(T) < lengths[:, None]
        assert_close(out[:, valid], want[:, valid], **tol)
        assert not out[:, ~valid].any()
    # Keras's states per layer: h (and c) of the forward, then the backward layer
    per_state = 2 if cell == "lstm" else 1
    for l, states in enumerate(finals):
        for d in range(1 + bidirectional):
            own = states[d * per_state:(d + 1) * per_state]
            row = l * (1 + bidirectional) + d
            assert_close(final["a"][row], own[0].T, **tol)
            if cell == "lstm":
                assert_close(final["c"][row], own[1].T, **tol)
    # one layer on its own is a model too
    single = models.from_keras(stack[0])
    assert single.num_layers == 1


def test_keras_softmax_head_and_errors():
    k = keras()
    rng = np.random.default_rng(4)
    lstm = k.layers.LSTM(6, return_sequences=True, dtype="float64")
    dense = k.layers.Dense(3, activation="softmax", dtype="float64")
    net = k.Sequential([k.Input((8, 4), dtype="float64"), lstm, dense])
    for layer in (lstm, dense):
        randomize(layer, rng)
    x = rng.standard_normal((4, 5, 8))
    want = k.ops.convert_to_numpy(net(x.transpose(1, 2, 0))).transpose(2, 0, 1)
    model = models.from_keras(net)
    assert model.head["Wy"].shape == (3, 6)
    assert_close(model(x)[0], want, **KERAS_TOL[np.float64])

    def built(layer, n_x=4):
        layer.build((None, 8, n_x))
        return layer

    with pytest.raises(ValueError, match="activation='relu'; only 'tanh'"):
        models.from_keras(built(k.layers.SimpleRNN(3, activation="relu")))
    with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid'"):
        models.from_keras(built(k.layers.GRU(3, recurrent_activation="hard_sigmoid")))
    with pytest.raises(ValueError, match="go_backwards=True"):
        models.from_keras(built(k.layers.LSTM(3, go_backwards=True)))
    with pytest.raises(ValueError, match="merge_mode='sum'"):
        models.from_keras(built(k.layers.Bidirectional(k.layers.LSTM(3), merge_mode="sum")))
    with pytest.raises(ValueError, match="is not built"):
        models.from_keras(k.layers.LSTM(3))
    with pytest.raises(ValueError, match="mix cells"):
        models.from_keras(k.Sequential([k.Input((8, 4)), k.layers.LSTM(3, return_sequences=True),
                                        k.layers.GRU(3)]))
    with pytest.raises(ValueError, match=r"Dense with activation='softmax'.*'relu'"):
        models.from_keras(k.Sequential([k.Input((8, 4)), k.layers.LSTM(3, return_sequences=True),
                                        k.layers.Dense(2, activation="relu")]))
    with pytest.raises(ValueError, match=r"\(Conv1D\) is not supported"):
        models.from_keras(k.Sequential([k.Input((8, 4)), k.layers.Conv1D(3, 2),
                                        k.layers.LSTM(3)]))
    with pytest.raises(TypeError, match="needs a Keras"):
        models.from_keras(object())


# -------------------------------------------------------------------- ONNX

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def onnx_graph(o, cell, n_x, n_a, direction="forward", dtype=np.float32, rng=None,
               with_lengths=False, bias=True, extra=None, layers=1, **attributes):
    """A graph of `layers` stacked RNN/LSTM/GRU nodes, weights as initializers
    (uniform in ±0.6), with the Squeeze/Transpose/Reshape between layers that
    exporters write."""
    h = o.helper
    D = 2 if direction == "bidirectional" else 1
    elem = h.np_dtype_to_tensor_dtype(np.dtype(dtype))
    op = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    nodes, inits, outputs = [], [], []
    x_name, n_in = "X", n_x
    for l in range(layers):
        W = rng.uniform(-0.6, 0.6, (D, GATES[cell] * n_a, n_in)).astype(dtype)
        R = rng.uniform(-0.6, 0.6, (D, GATES[cell] * n_a, n_a)).astype(dtype)
        B = rng.uniform(-0.6, 0.6, (D, 2 * GATES[cell] * n_a)).astype(dtype)
        names = [f"W{l}", f"R{l}", f"B{l}" if bias else ""]
        inits += [o.numpy_helper.from_array(W, f"W{l}"), o.numpy_helper.from_array(R, f"R{l}")]
        if bias:
            inits.append(o.numpy_helper.from_array(B, f"B{l}"))
        inputs = [x_name, *names, "lens" if with_lengths else ""]
        outs = [f"Y{l}", f"Yh{l}"] + ([f"Yc{l}"] if cell == "lstm" else [])
        nodes.append(h.make_node(op, inputs, outs, name=f"{op}{l}", hidden_size=n_a,
                                 direction=direction, **attributes))
        # Y (T, D, m, n_a) -> (T, m, D·n_a) for the next layer, as exporters do
        nodes.append(h.make_node("Transpose", [f"Y{l}"], [f"Yt{l}"], perm=[0, 2, 1, 3]))
        nodes.append(h.make_node("Reshape", [f"Yt{l}", "shape"], [f"X{l + 1}"]))
        outputs += outs[1:]
        x_name, n_in = f"X{l + 1}", D * n_a
    inits.append(o.numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape"))
    nodes += extra or []
    graph = h.make_graph(
        nodes, "g",
        [h.make_tensor_value_info("X", elem, ["T", "m", n_x])] +
        ([h.make_tensor_value_info("lens", o.TensorProto.INT32, ["m"])] if with_lengths else []),
        [h.make_tensor_value_info(name, elem, None) for name in [x_name, *outputs]],
        initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def compare_onnx(cell, graph, outputs, x, lengths, dtype, D):
    model = models.from_onnx(graph)
    out, final = model(x, lengths=lengths)
    T, m = x.shape[2], x.shape[1]
    want = outputs[0].reshape(T, m, -1).transpose(2, 1, 0)
    tol = TOL[dtype]
    assert out.dtype == dtype
    assert_close(out, want, **tol)
    per_layer = 2 if cell == "lstm" else 1
    hs = np.concatenate(outputs[1::per_layer])              # (L·D, m, n_a)
    assert_close(final["a"], hs.transpose(0, 2, 1), **tol)
    if cell == "lstm":
        assert_close(final["c"], np.concatenate(outputs[2::2]).transpose(0, 2, 1), **tol)
    assert model.num_layers == (len(outputs) - 1) // per_layer and model.directions == D


@pytest.mark.parametrize("cell, attributes", [("rnn", {}), ("lstm", {}),
                                              ("gru", {"linear_before_reset": 1}),
                                              ("gru", {"linear_before_reset": 0})])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_onnx_graphs_match_onnxruntime(cell, attributes, direction, with_lengths):
    o, ort = onnx(), onnxruntime()
    rng = np.random.default_rng(5)
    n_x, n_a, m, T = 5, 7, 6, 9
    graph = onnx_graph(o, cell, n_x, n_a, direction, rng=rng, with_lengths=with_lengths,
                       layers=2, **attributes)
    x = rng.standard_normal((n_x, m, T)).astype(np.float32)
    lengths = LENGTHS if with_lengths else None
    feeds = {"X": np.ascontiguousarray(x.transpose(2, 1, 0))}
    if with_lengths:
        feeds["lens"] = lengths.astype(np.int32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    compare_onnx(cell, graph, outputs, x, lengths, np.float32,
                 2 if direction == "bidirectional" else 1)


@pytest.mark.parametrize("cell, attributes", [("rnn", {}), ("lstm", {}),
                                              ("gru", {"linear_before_reset": 1}),
                                              ("gru", {"linear_before_reset": 0})])
def test_float64_onnx_graphs_match_the_reference_evaluator(cell, attributes):
    """onnxruntime has no float64 LSTM; onnx's own evaluator (NumPy) runs it."""
    o = onnx()
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(6)
    n_x, n_a, m, T = 4, 6, 3, 8
    graph = onnx_graph(o, cell, n_x, n_a, "bidirectional", dtype=np.float64, rng=rng,
                       layers=2, **attributes)
    x = rng.standard_normal((n_x, m, T))
    outputs = ReferenceEvaluator(graph).run(None, {"X": x.transpose(2, 1, 0).copy()})
    compare_onnx(cell, graph, outputs, x, None, np.float64, 2)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_graphs_exported_from_pytorch(cell):
    """torch.onnx's exporter (TorchScript-based) writes the gates in ONNX's
    order and the reshapes between layers; the model equals the module."""
    onnx()
    t = require_peer("torch", "ONNX graphs are exported from PyTorch modules")
    from test_models import make, run_torch
    net = make(t, cell, 5, 7, 2, True)
    x = np.random.default_rng(7).standard_normal((5, 3, 6))
    buffer = io.BytesIO()
    with warnings.catch_warnings():     # the exporter's deprecation notices
        warnings.simplefilter("ignore")
        t.onnx.export(net, (t.from_numpy(x.transpose(2, 1, 0).copy()),), buffer, dynamo=False)
    model = models.from_onnx(buffer.getvalue())
    out, final = model(x)
    want, h, c = run_torch(t, net, x)
    assert_close(out, want, **TOL[np.float64])
    assert_close(final["a"], h, **TOL[np.float64])
    if cell == "lstm":
        assert_close(final["c"], c, **TOL[np.float64])


def export_with_the_default_exporter(t, net, x, **options):
    """torch.onnx.export's default (dynamo) exporter; it needs onnxscript."""
    require_peer("onnxscript", "PyTorch's default ONNX exporter needs it")
    import logging
    buffer = io.BytesIO()
    quiet = logging.getLogger("torch.onnx")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = t.onnx.export(net, (t.from_numpy(x.transpose(2, 1, 0).copy()),),
                                    dynamo=True, **options)
            program.model_proto  # noqa: B018 (builds the proto inside the quiet block)
    finally:
        quiet.level = level
    return program.model_proto


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (1, True), (2, False),
                                                   (2, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_graphs_from_the_default_exporter(cell, layers, bidirectional, dtype, optimize):
    """torch.onnx.export's default exporter writes an LSTM/GRU node per layer;
    unoptimized, their weights are computed from the module's tensors by
    Slice/Concat/Unsqueeze nodes, which from_onnx folds."""
    onnx()
    t = require_peer("torch", "ONNX graphs are exported from PyTorch modules")
    from test_models import make, run_torch
    net = make(t, cell, 5, 7, layers, bidirectional,
               dtype=t.float32 if dtype == np.float32 else t.float64)
    x = np.random.default_rng(9).standard_normal((5, 3, 6)).astype(dtype)
    graph = export_with_the_default_exporter(t, net, x, optimize=optimize)
    ops = {node.op_type for node in graph.graph.node}
    assert ops & {"LSTM", "GRU"}
    if not optimize:    # the case folding exists for: weights computed by nodes
        recurrent = [n for n in graph.graph.node if n.op_type in ("LSTM", "GRU")]
        initializers = {i.name for i in graph.graph.initializer}
        assert all(n.input[1] not in initializers for n in recurrent)
    model = models.from_onnx(graph)
    out, final = model(x)
    want, h, c = run_torch(t, net, x)
    tol = TOL[dtype]
    assert out.dtype == dtype
    assert_close(out, want, **tol)
    assert_close(final["a"], h, **tol)
    if cell == "lstm":
        assert_close(final["c"], c, **tol)


def test_plain_rnns_from_the_default_exporter_are_refused_with_the_way_out():
    """That exporter unrolls nn.RNN into MatMul/Tanh nodes over the example's
    length: there is no RNN node to read, and the message says what to do."""
    onnx()
    t = require_peer("torch", "ONNX graphs are exported from PyTorch modules")
    from test_models import make
    net = make(t, "rnn", 5, 7, 1, False, dtype=t.float32)
    x = np.zeros((5, 3, 6), np.float32)
    graph = export_with_the_default_exporter(t, net, x)
    assert "MatMul" in {node.op_type for node in graph.graph.node}
    with pytest.raises(ValueError, match="no RNN, LSTM or GRU node.*dynamo=False.*from_torch"):
        models.from_onnx(graph)


def test_onnx_errors(tmp_path):
    o = onnx()
    rng = np.random.default_rng(8)
    h = o.helper
    path = tmp_path / "lstm.onnx"
    o.save(onnx_graph(o, "lstm", 3, 4, rng=rng), path)
    assert models.from_onnx(str(path)).n_x == 3 and models.from_onnx(path).n_a == 4
    cases = [
        (dict(cell="lstm", clip=3.0), "clip=3.0; cell clipping is not supported"),
        (dict(cell="lstm", input_forget=1), "input_forget=1"),
        (dict(cell="gru", activations=["Sigmoid", "Relu"]), r"activations=\['Sigmoid', 'Relu'\]"),
        (dict(cell="rnn", direction="reverse"), "direction='reverse'"),
        (dict(cell="rnn", extra=[h.make_node("Relu", ["X1"], ["Z"], name="act")]),
         r"node 'act' \(Relu\) is not supported"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            models.from_onnx(onnx_graph(o, n_x=3, n_a=4, rng=rng, **kwargs))
    peephole = onnx_graph(o, "lstm", 3, 4, rng=rng)
    peephole.graph.node[0].input.extend(["", "", "P"])    # X W R B lens h0 c0 P
    with pytest.raises(ValueError, match="peepholes"):
        models.from_onnx(peephole)
    weights_as_input = onnx_graph(o, "rnn", 3, 4, rng=rng)
    weights_as_input.graph.node[0].input[1] = "X"
    with pytest.raises(ValueError, match=r"its input W \('X'\) is not a constant"):
        models.from_onnx(weights_as_input)
    computed_from_input = onnx_graph(o, "rnn", 3, 4, rng=rng, extra=[
        h.make_node("Transpose", ["X"], ["Xt"], perm=[1, 2, 0])])
    computed_from_input.graph.node[0].input[2] = "Xt"
    with pytest.raises(ValueError, match=r"its input R \('Xt'\) is not a constant"):
        models.from_onnx(computed_from_input)
    # a shape's arithmetic may sit between layers; arithmetic on data may not
    on_shapes = onnx_graph(o, "rnn", 3, 4, rng=rng, extra=[
        h.make_node("Shape", ["Y0"], ["s"]), h.make_node("Mul", ["s", "s"], ["s2"])])
    assert models.from_onnx(on_shapes).n_a == 4
    on_data = onnx_graph(o, "rnn", 3, 4, rng=rng, extra=[
        h.make_node("Mul", ["Y0", "Y0"], ["y2"], name="square")])
    with pytest.raises(ValueError, match=r"node 'square' \(Mul\) is not supported"):
        models.from_onnx(on_data)
    # constant initial states must be the zeros a Model starts from
    for value, accepted in ((0.0, True), (0.5, False)):
        with_state = onnx_graph(o, "lstm", 3, 4, rng=rng)
        with_state.graph.initializer.append(
            o.numpy_helper.from_array(np.full((1, 2, 4), value, np.float32), "h0"))
        with_state.graph.node[0].input.append("h0")       # X W R B lens h0
        if accepted:
            assert models.from_onnx(with_state).n_a == 4
        else:
            with pytest.raises(ValueError, match=r"initial_h \('h0'\) is a nonzero constant"):
                models.from_onnx(with_state)
    wrong_size = onnx_graph(o, "gru", 3, 4, rng=rng)
    next(a for a in wrong_size.graph.node[0].attribute if a.name == "hidden_size").i = 5
    with pytest.raises(ValueError, match=r"W has shape \(1, 12, 3\); expected \(1, 15, 3\)"):
        models.from_onnx(wrong_size)
    empty = h.make_model(h.make_graph([], "g", [], []))
    with pytest.raises(ValueError, match="no RNN, LSTM or GRU node"):
        models.from_onnx(empty)
    # without biases the model has zero biases, like the graph
    no_bias = onnx_graph(o, "gru", 3, 4, rng=rng, bias=False, linear_before_reset=1)
    assert not models.from_onnx(no_bias).layers[0][0]["bcx"].any()
