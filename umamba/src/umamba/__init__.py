"""U-Mamba on stock nnU-Net v2.

Importing this package is cheap and needs neither CUDA, triton nor mamba-ssm: sub-packages
(`umamba.mamba`, `umamba.nets`, ...) import torch only when they are imported themselves.
"""

__version__ = "0.1.0"
