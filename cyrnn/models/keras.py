"""Keras 3: SimpleRNN/LSTM/GRU layers (also Bidirectional, in a model) to a Model."""
import numpy as np

from cyrnn.models.convert import _direction
from cyrnn.models.model import Model

# Keras's order of the gate blocks in its stacked weights (see convert._direction).
_KERAS_ORDER = {"rnn": "", "lstm": "ifco", "gru": "zrn"}

_KERAS_CELLS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _keras_class(layer):
    """The Keras class a layer is (or derives from) among those read here."""
    for cls in type(layer).__mro__:
        if cls.__name__ in (*_KERAS_CELLS, "Bidirectional", "Dense", "TimeDistributed",
                            "InputLayer"):
            return cls.__name__
    return type(layer).__name__


def from_keras(layer_or_model, *, head=None):
    """A Model with the weights of Keras 3 layers (any backend): a SimpleRNN,
    LSTM or GRU (reset_after True or False), a Bidirectional of one (merge_mode
    'concat'), or a Sequential/functional model (or a list of layers) that
    stacks such layers of one kind, optionally ending in a Dense (or
    TimeDistributed Dense) with a softmax, which becomes the head. Inputs are
    always (n_x, m, T) (Keras's are (m, T, n_x)); a Keras mask is `lengths`
    here. Unsupported, each a ValueError naming it: activations other than
    tanh/sigmoid, go_backwards outside a Bidirectional, other merge modes,
    other layers in a model."""
    obj = layer_or_model
    kind = _keras_class(obj)
    if kind in (*_KERAS_CELLS, "Bidirectional"):
        stack = [obj]
    elif isinstance(obj, (list, tuple)) or hasattr(obj, "layers"):
        stack = [layer for layer in (obj if isinstance(obj, (list, tuple)) else obj.layers)
                 if _keras_class(layer) != "InputLayer"]
    else:
        raise TypeError(f"from_keras needs a Keras SimpleRNN/LSTM/GRU/Bidirectional layer "
                        f"or a model of them; got {type(obj).__name__}")
    if stack and _keras_class(stack[-1]) in ("Dense", "TimeDistributed"):
        if head is not None:
            raise ValueError("the Keras model ends in a Dense layer and head= was given too")
        head = _keras_head(stack.pop())
    layers, cells = [], set()
    for layer in stack:
        kind = _keras_class(layer)
        if kind == "Bidirectional":
            merge = layer.get_config().get("merge_mode")
            if merge != "concat":
                raise ValueError(f"Bidirectional {layer.name!r} has merge_mode={merge!r}; only "
                                 "'concat' is supported (the outputs stack both directions)")
            directions = [(layer.forward_layer, False), (layer.backward_layer, True)]
        elif kind in _KERAS_CELLS:
            directions = [(layer, False)]
        else:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not supported "
                             "in a Keras model: only SimpleRNN/LSTM/GRU, Bidirectional of "
                             "them, and a final softmax Dense")
        converted = []
        for sub, backwards in directions:
            cell, p = _keras_direction(sub, backwards)
            cells.add(cell)
            converted.append(p)
        layers.append(converted)
    if len(cells) != 1:
        raise ValueError(f"the Keras layers mix cells {sorted(cells)}; a Model has one kind")
    return Model(cells.pop(), layers, head)


def _keras_direction(layer, backwards):
    kind = _keras_class(layer)
    if kind not in _KERAS_CELLS:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not a "
                         "SimpleRNN, LSTM or GRU")
    cell = _KERAS_CELLS[kind]
    config = layer.get_config()
    wanted = {"activation": "tanh"}
    if cell != "rnn":
        wanted["recurrent_activation"] = "sigmoid"
    for key, value in wanted.items():
        if config.get(key) != value:
            raise ValueError(f"{kind} {layer.name!r} has {key}={config.get(key)!r}; only "
                             f"{value!r} is supported")
    if bool(config.get("go_backwards")) != backwards:
        raise ValueError(f"{kind} {layer.name!r} has go_backwards={config.get('go_backwards')}; "
                         "a reversed layer is supported only inside a Bidirectional")
    if not layer.built:
        raise ValueError(f"{kind} {layer.name!r} is not built (it has no weights yet): call "
                         "it on an input or build it first")
    weights = [np.asarray(w) for w in layer.get_weights()]
    kernel, recurrent = weights[0], weights[1]
    n_a = recurrent.shape[0]
    zeros = np.zeros(recurrent.shape[1], recurrent.dtype)
    b_ih, b_hh = zeros, zeros
    if len(weights) > 2:     # a reset-after GRU has two bias rows (input, recurrent)
        bias = weights[2]
        b_ih, b_hh = (bias[0], bias[1]) if bias.ndim == 2 else (bias, zeros)
    return cell, _direction(cell, n_a, kernel.T, recurrent.T, b_ih, b_hh, _KERAS_ORDER[cell],
                            reset_after=bool(config.get("reset_after", True)))


def _keras_head(layer):
    dense = layer.layer if _keras_class(layer) == "TimeDistributed" else layer
    config = dense.get_config()
    if _keras_class(dense) != "Dense" or config.get("activation") != "softmax":
        raise ValueError(f"the final layer {layer.name!r} must be a Dense with "
                         f"activation='softmax' to be the head; got {type(dense).__name__} "
                         f"with activation={config.get('activation')!r}")
    weights = [np.asarray(w) for w in dense.get_weights()]
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[1], kernel.dtype)
    return {"Wy": kernel.T, "by": bias[:, None]}
