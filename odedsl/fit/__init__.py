"""Fitting models to data: the data contract, losses, optimisers, the fitting loop and its checkpoints."""
