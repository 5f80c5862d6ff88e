"""`python -m edgeguard.cli`: the same as the `edgeguard` command."""

import sys

from . import main

sys.exit(main())
