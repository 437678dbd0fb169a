"""Files in and out: image stacks and their axes (``stack_io``, ``axes``), labels stores that a run can
resume (``labels_store``), pairing images with labels (``pairing``), atomic writes (``files``)."""
