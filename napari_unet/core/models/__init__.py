"""Networks and model files: ``unet`` / ``u2net`` (the networks), ``config`` (what a model file records),
``model`` (loading, saving, the shipped models)."""
