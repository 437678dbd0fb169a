"""Label images: ``postprocess`` (probabilities to labels), ``targets`` (labels to training targets and
object sizes), ``stack_ids`` (ids unique in a stack, linked across z), ``label_edit`` (the Label tools'
edits)."""
