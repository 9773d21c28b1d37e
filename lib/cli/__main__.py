"""`python -m lib.cli`: runs the command line."""

import sys

from lib.cli.main import main

sys.exit(main())
