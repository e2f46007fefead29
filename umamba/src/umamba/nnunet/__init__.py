"""U-Mamba on stock nnU-Net v2: trainers, planning and training runners, version compatibility (compat.py).

Importing this package does not import nnunetv2 or torch; the sub-modules that need them import them.
"""
