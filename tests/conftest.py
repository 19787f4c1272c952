import os
import sys
from pathlib import Path

# Tests import each other's small helpers (e.g. make_bundle) by module name.
sys.path.insert(0, str(Path(__file__).parent))
# No test may reach for the network: the hub client reads this when it is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
