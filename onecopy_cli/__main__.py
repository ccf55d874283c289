import sys

from onecopy_cli.main import main

sys.exit(main())
