import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# Without a GPU the Triton backend is tested on CPU tensors through Triton's interpreter; the variable must be set
# before any kernel is decorated. With a GPU the same tests run compiled kernels on CUDA tensors.
try:
    import torch
    _gpu = torch.cuda.is_available()
except ImportError:
    _gpu = False
if not _gpu:
    os.environ.setdefault("TRITON_INTERPRET", "1")
