"""The model file format: a .npz of the weights and a JSON description (no pickle)."""
import json

import numpy as np

from cyrnn.models.model import Model, _gate_keys

_FORMAT = "cyrnn.models/1"


def save(model, path, *, extra=None):
    """Write `model` to `path` (see Model.save)."""
    arrays = {f"extra/{name}": np.asarray(value) for name, value in (extra or {}).items()}
    for l, layer in enumerate(model.layers):
        for d, p in enumerate(layer):
            for key in _gate_keys(model.cell, p):
                arrays[f"layers/{l}/{d}/{key}"] = p[key]
    if model.head is not None:
        arrays["head/Wy"], arrays["head/by"] = model.head["Wy"], model.head["by"]
    meta = {"format": _FORMAT, "cell": model.cell, "num_layers": model.num_layers,
            "directions": model.directions, "head": model.head is not None}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path):
    """A model written by Model.save (no pickle is read)."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["__meta__"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path!r} is not a cyrnn model file (format {meta.get('format')!r})")
        layers = []
        for l in range(meta["num_layers"]):
            layer = []
            for d in range(meta["directions"]):
                prefix = f"layers/{l}/{d}/"
                layer.append({k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)})
            layers.append(layer)
        head = {"Wy": f["head/Wy"], "by": f["head/by"]} if meta["head"] else None
    return Model(meta["cell"], layers, head)
