"""``python -m ionclock``: the command line (`ionclock.commands.main`), as the script."""

import sys

from ionclock.commands.main import main

sys.exit(main())
