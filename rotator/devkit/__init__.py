"""Not the product: the test and demo kit (the Adobe sandbox, the local AWS stand-in, the
demo). It ships in the package so `rotator demo` and `rotator sandbox` work from an install,
but nothing in the product imports it (an import-linter contract in pyproject.toml)."""
