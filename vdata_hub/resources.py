"""Where the files shipped inside the package live (templates, specs, group data, card templates).

`templates/`, `dataset_card/` and `eval/` sit at the repository root and are installed as the
subpackages vdata_hub.templates, vdata_hub.dataset_card and vdata_hub.eval (pyproject's
package-dir), so asking the subpackage for its folder works from a checkout and from a wheel.
"""

from __future__ import annotations

from pathlib import Path

import vdata_hub.dataset_card
import vdata_hub.eval
import vdata_hub.templates

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = Path(vdata_hub.templates.__file__).resolve().parent
SPECS_DIR = TEMPLATES_DIR / "specs"
TEMPLATE_DATA_DIR = TEMPLATES_DIR / "data"
CARD_DIR = Path(vdata_hub.dataset_card.__file__).resolve().parent
EVAL_DIR = Path(vdata_hub.eval.__file__).resolve().parent
