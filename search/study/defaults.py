"""Defaults the command line, the schema and the Python API share, in a module that imports
nothing: the command line reads them without paying for torch, optuna or pydantic."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_SAMPLER", "DEFAULT_WORKSPACE", "SAMPLERS"]

# The workspace of a command given no --workspace: the SQLite study, artifacts, data, logs.
DEFAULT_WORKSPACE = Path("ecgsearch-work")
# The samplers a definition's [sampler] or --sampler may name (their settings: definition_schema).
SAMPLERS = ("tpe", "nsga2", "gp", "random", "botorch")
DEFAULT_SAMPLER = "tpe"
