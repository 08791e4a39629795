"""Experiments on top of the tasks: the speed bench and the paper's protocols (reproduce)."""
