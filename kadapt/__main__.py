"""``python -m kadapt`` runs the CLI (same as the ``kadapt`` command)."""
import sys

from kadapt.cli.app import main

sys.exit(main())
