"""``python -m deepsphere``: the command-line interface without the installed entry point."""
import sys

from .cli import main

sys.exit(main())
