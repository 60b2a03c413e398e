import sys

from peftqa.cli import main

sys.exit(main())
