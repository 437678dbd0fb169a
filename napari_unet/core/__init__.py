"""The library under the plugin: no napari, no Qt.

Grouped by job, each subpackage importing only those listed before it (and the
shared ``errors``, ``progress``, ``devices``); ``tests/test_architecture.py``
checks it:

- ``io``: image stacks, labels stores, pairing files, atomic writes;
- ``models``: the networks and model files;
- ``labels``: probabilities to labels, training targets, ids across a stack, edits;
- ``predict``: predict / segment, object size, tiles, devices' fallbacks;
- ``evaluation``: metrics, a model's scores on files, the baseline;
- ``batch``: files and folders to labels, resumable, on a dask cluster;
- ``training``: training, fine-tuning and its checks, training projects.
"""
