"""Put first on PYTHONPATH of the processes an isvc starts under launch.py (KServe's spawned REST
workers): applies the launcher's options (ML_SANDBOX_LAUNCH) there too. Standard library only."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
try:
    import launch
finally:
    del sys.path[0]

launch.install_from_env()
