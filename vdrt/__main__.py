import sys

from vdrt.cli import main

sys.exit(main())
