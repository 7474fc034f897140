"""``python -m benchmarks.compare``: an alias of ``wm-agent compare`` (the harness is ``wm_agent.compare``)."""

import sys

from wm_agent.compare import main

if __name__ == "__main__":
    sys.exit(main())
