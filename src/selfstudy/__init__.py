"""selfstudy: how useful is self-supervised pretraining for visual tasks?

A toolkit that renders endless, fully labeled synthetic data with controlled difficulty, pretrains
backbones with self-supervised methods, finetunes and probes them at many label counts, and reports how
many labels pretraining saves (the utility of Newell & Deng, CVPR 2020).
"""

__version__ = "0.1.0"
