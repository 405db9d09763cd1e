"""The low-level pieces every layer shares, and that import nothing of the project but ``errors``.

- :mod:`.constants`: names and defaults defined once (precisions, the scratch arm, the budget-check
  tolerance);
- :mod:`.io`: atomic file writes;
- :mod:`.device`: which device a run uses, and the autocast context of a precision;
- :mod:`.distributed`: the ``torchrun`` side of training (process group, sharding, gathers).

The layers above import from here, never the other way round: ``core`` <- ``scene``, ``data``,
``models``, ``methods``, ``tasks`` <- ``train`` <- ``study`` <- ``cli`` (``tests/test_layers.py`` checks
it). ``constants``, ``io`` and ``device`` do not import torch when imported, so the study layer and the
CLI start without it.
"""
