"""The service's layers, as rules on its imports (ecgnet's independence: test_packaging).

Each sub-package of ``ecgsearch`` is a layer and imports only from its own layer and the ones
below it; the modules at the top of the package (errors, private files, the metric table, the
trial record) are the vocabulary every layer uses. ``api`` is the Python API beside the commands.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SEARCH = Path(__file__).resolve().parents[1] / "search"
# Top to bottom: what each layer may import is itself and everything after it.
LAYERS = ["cli", "commands", "trials", "analysis", "study", "storage", "vocabulary"]
VOCABULARY = {"errors", "private_files", "metric_table", "trial_record"}
BESIDE_THE_COMMANDS = {"api"}
# The Optuna storage subclass overrides Optuna's private methods by design (see its docstring);
# every other private use goes through optuna_internals, where each is tested.
PRIVATE_OPTUNA_HOMES = {"storage.optuna_internals", "storage.storage"}
PRIVATE_OPTUNA = re.compile(r"\boptuna\._|\._storage\b|\._backend\b|\._trial_id\b|\._study_id\b")


def module_name(path: Path) -> str:
    """``search/trials/worker.py`` -> ``trials.worker``; a package's ``__init__`` is the package."""
    parts = path.relative_to(SEARCH).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top in BESIDE_THE_COMMANDS:
        return "commands"
    return top if top in LAYERS else "vocabulary"


def imported_modules(path: Path) -> set[str]:
    """The ecgsearch modules ``path`` imports (without the ``ecgsearch.``), at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecgsearch."):
            found.add(node.module.removeprefix("ecgsearch."))
        elif isinstance(node, ast.ImportFrom) and node.module == "ecgsearch":
            found.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("ecgsearch.") for a in node.names if a.name.startswith("ecgsearch."))
    return found


def modules() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in SEARCH.rglob("*.py") if module_name(path)}


def test_every_layer_is_a_package_and_every_module_has_a_layer() -> None:
    for layer in LAYERS[:-1]:
        assert (SEARCH / layer / "__init__.py").is_file(), layer
    loose = {path.stem for path in SEARCH.glob("*.py")} - {"__init__"}
    assert loose == VOCABULARY | BESIDE_THE_COMMANDS


def test_each_layer_imports_only_itself_and_the_layers_below() -> None:
    upward = {}
    for name, deps in modules().items():
        rank = LAYERS.index(layer_of(name))
        above = sorted(dep for dep in deps if LAYERS.index(layer_of(dep)) < rank)
        if above:
            upward[name] = above
    assert upward == {}


def test_only_the_command_line_parses_arguments() -> None:
    users = {module_name(p) for p in SEARCH.rglob("*.py") if re.search(r"^\s*(import|from) typer", p.read_text(), re.M)}
    assert {layer_of(user) for user in users} == {"cli"}, users


def test_optunas_private_api_is_used_in_one_place() -> None:
    users = {module_name(p) for p in SEARCH.rglob("*.py") if PRIVATE_OPTUNA.search(p.read_text())}
    assert users <= PRIVATE_OPTUNA_HOMES, users - PRIVATE_OPTUNA_HOMES
