"""``python -m alexnet_bench.reports --results results/default --out reports``."""

import sys

from .cli import main

sys.exit(main())
