"""Prediction: ``inference`` (predict / segment, plane by plane), ``sizing`` (the object-size estimate and
the zoom), ``tiling`` (overlap-tile prediction), ``predictor`` (the network on a device), ``fallback``
(smaller tiles, then the CPU, when memory runs out), ``normalize``."""
