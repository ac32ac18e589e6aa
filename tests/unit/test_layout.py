"""The package's rooms as the README's "Development" lists them: ``sitewatch.airflow`` holds only
Airflow glue, so every module there uses Airflow: it imports ``airflow`` itself, or another module
of the layer (a hook, the notifiers), at its top or inside the function that needs it (the
callbacks and the mute form load Airflow's API only when Airflow calls them).

That no module outside ``sitewatch.airflow`` and ``sitewatch.web`` imports a web framework, or
outside ``sitewatch.airflow`` imports Airflow, is said by the import contracts in pyproject.toml.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sitewatch.airflow as layer

GLUE = ("airflow", "sitewatch.airflow")


def imported(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def uses_airflow(names: set[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for name in names for root in GLUE)


def test_every_module_of_the_airflow_layer_uses_airflow():
    modules = sorted(p for p in Path(layer.__file__).parent.glob("*.py") if p.name != "__init__.py")
    assert len(modules) > 10, modules  # the layer was found
    without = [p.name for p in modules if not uses_airflow(imported(p))]
    assert without == [], f"these use no Airflow, so they belong in another layer: {without}"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    glue = tmp_path / "glue.py"
    glue.write_text("def f():\n    from airflow.sdk import Variable\n    return Variable\n")
    plain = tmp_path / "plain.py"
    plain.write_text("import json\nfrom sitewatch.alerting import rules\n")
    assert uses_airflow(imported(glue)) and not uses_airflow(imported(plain))
