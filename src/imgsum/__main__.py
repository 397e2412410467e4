"""``python -m imgsum``: the command line, as ``imgsum`` (and ``torchrun -m imgsum train ...``)."""

import sys

from .cli import main

sys.exit(main())
