"""Geometric and photometric evaluation: alignment, exact mesh distances, per-mesh errors,
paper-style tables and ground-truth scan loaders (paper §4.2, Tables 1–2; supplement Table 4)."""
