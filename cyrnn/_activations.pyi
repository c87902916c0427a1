# Type stubs of src/_activations.pyx.
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

def softmax(x: ArrayLike) -> NDArray[np.floating[Any]]: ...
def sigmoid(x: ArrayLike) -> NDArray[np.floating[Any]]: ...
