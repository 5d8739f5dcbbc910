import sys

from intercept_addon.cli import main

sys.exit(main())
