"""Models: stacks of RNN/LSTM/GRU layers, one or two directions, an optional
output head, and their weights from PyTorch, Keras and ONNX (docs/contract.md §7).

    model = cyrnn.models.from_torch(torch_lstm)       # or its state dict,
                                                      # from_keras, from_onnx
    outputs, final_state = model(x, lengths=lengths)  # x: (n_x, m, T)

Every direction of every layer runs in the one engine (src/_engine.pyx); a
reverse direction runs natively (no reversed copy of x), each column over its
own steps backwards when lengths are given (PyTorch's packed semantics).
The weights are the notebook's parameter dicts (cyrnn/_cells.py), one per
layer and direction.

Modules: model (the Model), files (its file format), pytorch, keras and onnx
(one importer each), convert (the frameworks' stacked weights as parameter dicts).
"""
from cyrnn.models.files import load
from cyrnn.models.keras import from_keras
from cyrnn.models.model import Model
from cyrnn.models.onnx import from_onnx
from cyrnn.models.pytorch import from_torch

__all__ = ["Model", "from_torch", "from_keras", "from_onnx", "load"]
