# Type stubs of src/_pool.pyx.
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

HANDLER: Any
MIN_BYTES: float

def release_memory() -> int: ...
def pool_info() -> tuple[int, int, int]: ...
def empty(shape: tuple[int, ...], dtype: DTypeLike) -> NDArray[Any]: ...
