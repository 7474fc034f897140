"""``python -m wm_agent.compare``: the ``wm-agent compare`` command."""

import sys

from wm_agent.compare.cli import main

sys.exit(main())
