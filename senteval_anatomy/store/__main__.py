import sys

from .feature_store import main

sys.exit(main())
