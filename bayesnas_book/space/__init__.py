"""Search spaces: candidate ops, switches, the BayesNAS 8-edge and DARTS 14-edge cell graphs."""
