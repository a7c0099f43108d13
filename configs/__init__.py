"""Run configurations (Python files returning an ml_collections.ConfigDict).

Presets compose: base.py holds every field with its meaning; demo, tiny, lcb
and sciknoweval each start from another preset and change what differs.

This folder is importable as `vpd_jax.configs` (the package holds a symlink
to it, and the wheel ships its files there), so presets import each other as
`from vpd_jax.configs import base`, and so can a config file of your own,
from a checkout or from an installed wheel alike. `--config NAME` in every
command finds a preset here by name (vpd_jax/cli.py).
"""
