"""`medbench models` and `medbench datasets`: listings that answer without importing torch.

What the registries hold (model metadata, data sources, families, MedMNIST flags) is read once
by importing them and kept as a small JSON snapshot in the project's cache folder, keyed by a
hash of the source files that register them (and the plugins'); later listings read the
snapshot. Parameter counts and MACs need built networks: they are computed only when asked
(``medbench models --cost`` or ``medbench models <name>``) and cached the same way.
"""
