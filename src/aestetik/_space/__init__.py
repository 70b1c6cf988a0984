"""The spatial stage (METHOD §3): integer lattice, window index, Gaussian smoothing. Arrays in, arrays out; no torch."""
