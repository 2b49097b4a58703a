import sys

from toolbox.entry import main

sys.exit(main())
