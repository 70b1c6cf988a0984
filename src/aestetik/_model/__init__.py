"""The network and its training (METHOD §4-6), on arrays and the prepared record; never an AnnData.

Lattice convolution, ensemble network, loss, triplet sampler, Lightning module, quiet Trainer, memory estimate
and weights files.
"""
