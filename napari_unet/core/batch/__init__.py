"""Batch segmentation of TIFF stacks, files or folders of them, with bounded memory: ``jobs`` (what a run
is made of), ``run`` (the run), ``cluster`` (planes on dask workers)."""

from .jobs import FORMATS, BatchOptions, BatchReport, FileDone, Job, check_inputs, check_writable, plan_jobs
from .run import describe, iter_segment_file, iter_segment_files

__all__ = [
    "FORMATS",
    "BatchOptions",
    "BatchReport",
    "FileDone",
    "Job",
    "check_inputs",
    "check_writable",
    "describe",
    "iter_segment_file",
    "iter_segment_files",
    "plan_jobs",
]
