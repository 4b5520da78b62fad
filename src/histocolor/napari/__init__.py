"""The napari front end: dock widgets and sample data, thin layers over the core.

Widgets read layers, run the core in a worker thread and add layers back; errors become
napari notifications. Nothing outside this package imports Qt or napari.
"""
