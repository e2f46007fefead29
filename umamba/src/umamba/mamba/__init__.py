"""The Mamba v1 block and its selective scan, on any torch device (imports torch; `import umamba` does not)."""

from umamba.mamba.block import Mamba
from umamba.mamba.scan import available_backends, selective_scan

__all__ = ["Mamba", "selective_scan", "available_backends"]
