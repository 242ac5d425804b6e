"""nnlab: a reproducible lab for why deep networks train or fail to train."""
