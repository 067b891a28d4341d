"""`python -m controller.cli`: the `brownout` command."""

import sys

from controller.cli.main import main

sys.exit(main())
