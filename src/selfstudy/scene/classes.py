"""The paper's 10 object classes, in its label order (0-9)."""

CLASSES = ("airplane", "bench", "cabinet", "car", "chair",
           "lamp", "sofa", "table", "watercraft", "motorcycle")
NUM_CLASSES = len(CLASSES)
