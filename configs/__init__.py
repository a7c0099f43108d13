"""Run configurations (Python files returning an ml_collections.ConfigDict).

Presets compose: base.py holds every field with its meaning; demo, tiny, lcb
and sciknoweval each start from another preset and change what differs.
"""
