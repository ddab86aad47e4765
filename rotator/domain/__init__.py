"""The pure core: states, transitions and policies.

No I/O imports, ever: import-linter holds this (see pyproject.toml).
"""
