"""iad-edge runtime: the real-time inspection lane and its tools.

Import-light on purpose: nothing here imports torch or transformers, and GPU
libraries (TensorRT, pycuda) are imported only inside the backend that needs them.
"""

__version__ = "0.1.0"
