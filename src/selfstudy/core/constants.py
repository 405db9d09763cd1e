"""Names and defaults that several layers use, defined once."""

#: Training precisions: fp32; bf16 autocast (CPU or CUDA); fp16 autocast with loss scaling (CUDA).
PRECISIONS = ("fp32", "bf16", "fp16")

#: The arm without pretraining: its method name in a study spec and its protocol in a result.
SCRATCH = "scratch"

#: Default budget-check tolerance: a check that gains more than this (in the task's primary metric's
#: units, so 0.01 is one accuracy point) marks its cell as under-trained.
BUDGET_CHECK_TOLERANCE = 0.01
