"""Measures of pre-images and networks: the IJCV error, label agreement and naturalness (metrics), and neuron
statistics (stats)."""
