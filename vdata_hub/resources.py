"""Where the files shipped inside the package live (templates, specs, group data, card templates).

`templates/`, `dataset_card/` and `eval/` sit at the repository root and are linked into the
package, so they are found the same way from a checkout and from an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
SPECS_DIR = TEMPLATES_DIR / "specs"
TEMPLATE_DATA_DIR = TEMPLATES_DIR / "data"
CARD_DIR = PACKAGE_DIR / "dataset_card"
EVAL_DIR = PACKAGE_DIR / "eval"
