"""transferlab: configuration-driven transfer-learning experiments with VGG."""
