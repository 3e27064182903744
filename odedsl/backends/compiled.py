"""A model's compiled Numba functions, ready to call from Python."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import ModuleType

from odedsl.model import Model


@dataclass
class NumbaModel:
    """The compiled module of one model (``model.compile()``), and how long loading it took."""

    model: Model
    module: ModuleType
    load_seconds: float

    @classmethod
    def build(cls, model: Model) -> "NumbaModel":
        from odedsl.backends.numba_module import load_module

        start = time.perf_counter()
        module = load_module(model)
        return cls(model, module, time.perf_counter() - start)
