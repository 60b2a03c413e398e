import sys

from peftqa.cli.commands import main

sys.exit(main())
