import sys

from pi.cli import main

sys.exit(main())
