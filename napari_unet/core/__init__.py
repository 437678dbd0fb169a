"""The library under the plugin: no napari, no Qt.

Modules: ``unet`` / ``u2net`` (networks), ``config`` / ``model`` (model files),
``normalize``, ``tiling`` (overlap-tile prediction), ``predictor``,
``postprocess`` (labels), ``axes`` / ``stack_io`` (images and stacks),
``inference`` (predict / segment), ``progress`` (long work as generators).
Batch: ``stack_ids`` (ids unique in a stack, linked across z), ``batch``
(files and folders to labels), ``labels_store`` (resumable zarr output),
``cluster`` (planes on dask workers).
Training: ``losses`` (ignore-aware, weighted), ``weightmap`` (the U-Net
border weights), ``metrics`` (pixel, object and probability-map scores),
``evaluate`` (a model's scores on files), ``baseline`` (Otsu + watershed).
"""
