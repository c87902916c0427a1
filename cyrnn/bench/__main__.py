import sys

from cyrnn.bench.cli import main

sys.exit(main())
