"""The service's layers, as rules on its imports: the command line on top, then the commands,
then everything else; Optuna's private API in one module (ecgnet's independence: test_packaging)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SEARCH = Path(__file__).resolve().parents[1] / "search"
CLI = {"cli", "cli_study"}  # argument parsing only (typer)
# One module per command family (and the Python API beside them): what a command does.
COMMANDS = {"run_commands", "confirm_commands", "data_commands", "model_commands", "result_commands",
            "slurm_commands", "api"}  # fmt: skip
# The Optuna storage subclass overrides Optuna's private methods by design (see its docstring);
# every other private use goes through optuna_internals, where each is tested.
PRIVATE_OPTUNA_HOMES = {"optuna_internals", "storage"}
PRIVATE_OPTUNA = re.compile(r"\boptuna\._|\._storage\b|\._backend\b|\._trial_id\b|\._study_id\b")


def imported_modules(path: Path) -> set[str]:
    """The ecgsearch modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecgsearch."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "ecgsearch":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ecgsearch."))
    return found


def modules() -> dict[str, set[str]]:
    return {path.stem: imported_modules(path) for path in SEARCH.glob("*.py")}


def test_every_named_module_exists() -> None:
    assert CLI | COMMANDS | PRIVATE_OPTUNA_HOMES <= set(modules())


def test_nothing_below_the_command_line_imports_it() -> None:
    upward = {name: sorted(deps & CLI) for name, deps in modules().items() if name not in CLI and deps & CLI}
    assert upward == {}


def test_nothing_below_the_commands_imports_a_command() -> None:
    below = {name: deps for name, deps in modules().items() if name not in CLI | COMMANDS}
    upward = {name: sorted(deps & COMMANDS) for name, deps in below.items() if deps & COMMANDS}
    assert upward == {}


def test_only_the_command_line_parses_arguments() -> None:
    users = {path.stem for path in SEARCH.glob("*.py") if re.search(r"^\s*(import|from) typer", path.read_text(), re.M)}
    assert users <= CLI, users - CLI


def test_optunas_private_api_is_used_in_one_place() -> None:
    users = {path.stem for path in SEARCH.glob("*.py") if PRIVATE_OPTUNA.search(path.read_text())}
    assert users <= PRIVATE_OPTUNA_HOMES, users - PRIVATE_OPTUNA_HOMES
