"""The package's rooms as the README's "Development" lists them: ``sitewatch.airflow`` holds only
Airflow glue, so every module there imports Airflow.

That no module outside ``sitewatch.airflow`` and ``sitewatch.web`` imports a web framework, or
outside ``sitewatch.airflow`` imports Airflow, is said by the import contracts in pyproject.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter. Airflow is never loaded there: its first import raises, so the
# module that asked for it, directly or through another, fails alone and the next module is
# judged on its own imports, not on what an earlier one left in sys.modules. (Loading Airflow
# for real costs ~2 s a module.) A BaseException, so that no ``except ImportError`` hides it.
_PROBE = """
import importlib, json, pkgutil, sys

class AirflowImported(BaseException):
    pass

class RefuseAirflow:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise AirflowImported(name)
        return None

sys.meta_path.insert(0, RefuseAirflow())
import sitewatch.airflow as layer

without = []
for module in pkgutil.iter_modules(layer.__path__, layer.__name__ + "."):
    try:
        importlib.import_module(module.name)
    except AirflowImported:
        continue
    without.append(module.name)
print(json.dumps(without))
"""


def test_every_module_of_the_airflow_layer_imports_airflow():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    without = json.loads(done.stdout)
    assert without == [], f"these import no Airflow, so they belong in another layer: {without}"
