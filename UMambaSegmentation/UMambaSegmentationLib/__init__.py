"""Logic of the UMambaSegmentation Slicer module: Qt-free, usable from Slicer's Python console and from tests.

The package name is unique on Slicer's shared sys.path (a plain `Logic` would collide with other extensions).
No file here imports torch or umamba: heavy work runs as `python -m umamba ...` in a background process.
"""
