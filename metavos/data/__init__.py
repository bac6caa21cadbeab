"""Data layer: DAVIS, YouTube-VOS and TFDS readers, synthetic data, writers.

Open datasets with `metavos.data.datasets.get_dataset`. Modules are not
imported here, so importing the package does not pull in TFDS.
"""
