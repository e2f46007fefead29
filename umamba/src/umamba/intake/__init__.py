"""Dataset intake: a folder of images and labels -> a validated nnU-Net raw dataset.

Torch-free, so the command line (`umamba import-dataset`) and the Slicer module share it:

    plan = inspect_source(folder)            # detect layout, read every file; IntakeError lists every problem
    path = write_dataset(plan, raw, "Liver") # nnUNet_raw/Dataset501_Liver, written atomically
"""

from umamba.intake.layouts import detect
from umamba.intake.problems import IntakeError, Problem, format_report
from umamba.intake.validate import IntakePlan, inspect_source
from umamba.intake.writer import free_id, write_dataset

__all__ = ["IntakeError", "IntakePlan", "Problem", "detect", "format_report", "free_id", "inspect_source",
           "write_dataset"]
