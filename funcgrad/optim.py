"""Optax-style pure optimisers over pytrees: sgd, momentum, adam."""
