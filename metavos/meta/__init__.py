"""Meta-learning of the fine-tuning: initialisation and neuron-level rates."""
