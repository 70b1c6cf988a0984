"""The spatial stage (METHOD §3): integer lattice (read from obs, detected from positions, or a grid for single cells), window index, Gaussian smoothing. Arrays in, arrays out; no torch."""
