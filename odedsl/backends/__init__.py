"""Numeric backends generated from the SymPy Model: Numba (CPU) now, Torch later."""
