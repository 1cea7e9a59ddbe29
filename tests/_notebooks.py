"""The committed notebooks as the tests read them: by name, and their one 'parameters' cell."""

import json

from helpers import paths


def read(name: str) -> dict:
    """``notebooks/<name>.ipynb`` as JSON."""
    return json.loads((paths.NOTEBOOKS_DIR / f"{name}.ipynb").read_text())


def parameters_cells(nb: dict) -> list[dict]:
    """The cells tagged 'parameters' (papermill injects its values after the first)."""
    return [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]


def source(cell: dict) -> str:
    return "".join(cell["source"])
