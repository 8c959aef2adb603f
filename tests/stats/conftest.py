import sys
from pathlib import Path

# Lets the test modules import the shared data module ``stats_data`` beside them.
sys.path.insert(0, str(Path(__file__).resolve().parent))
