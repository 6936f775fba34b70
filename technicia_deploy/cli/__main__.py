import sys

from technicia_deploy.cli import main

sys.exit(main())
