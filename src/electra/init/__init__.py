"""Initialising parts of a model before pre-training: word vectors, position tables."""
