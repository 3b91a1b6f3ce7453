import sys

from spinedx.cli import main

sys.exit(main())
