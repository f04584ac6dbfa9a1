"""Developer tooling: the embedded stack, the Batch API emulator, the sample-day generator, the demo.

Not part of the product. Entry points run as `python -m devstack.<tool>`; the `gradeflow` package
lives in plugins/ (Airflow's plugins folder), so it is put on sys.path here for them.
"""

import sys
from pathlib import Path

_PLUGINS = str(Path(__file__).resolve().parents[1] / "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)
