"""avmon: a real-time monitor for live audio/video streams."""

import os

# One process runs many streams, each on its own thread: OpenBLAS's thread pool (one
# thread per core it sees, a whole node's in a pod) would only spin beside them for the
# detectors' small matrix products. Set before anything imports numpy; an operator's
# own value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
