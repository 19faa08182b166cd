"""Sparse Bayesian learning: ARD, reweighted l1, HARD groups, Laplace update, entropy pruning."""
