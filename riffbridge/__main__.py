import sys

from riffbridge.cli import main

sys.exit(main())
