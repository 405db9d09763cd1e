"""Names and defaults that several layers use, defined once."""

#: Training precisions: fp32; bf16 autocast (CPU or CUDA); fp16 autocast with loss scaling (CUDA).
PRECISIONS = ("fp32", "bf16", "fp16")

#: The arm without pretraining: its method name in a study spec and its protocol in a result.
SCRATCH = "scratch"

#: Default budget-check tolerance: a check that gains more than this (in the task's primary metric's
#: units, so 0.01 is one accuracy point) marks its cell as under-trained.
BUDGET_CHECK_TOLERANCE = 0.01

#: budget: auto (selfstudy.study.autobudget): the modes of a study's budget checks, the default cap
#: (largest budget multiple a check cell runs at) and the standard errors of the gain a check must
#: exceed to count.
BUDGET_MODES = ("auto", "off")
BUDGET_CAP = 8.0
BUDGET_NOISE_K = 1.0
