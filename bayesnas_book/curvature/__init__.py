"""Curvature of the loss in the switches: the fast diagonal Gauss-Newton recursion and references."""
