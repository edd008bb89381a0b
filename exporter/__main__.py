"""`python -m exporter` runs the same entry point as the `vastai-exporter` script."""

import sys

from .cli import main

sys.exit(main())
