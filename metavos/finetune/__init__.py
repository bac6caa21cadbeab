"""Test-time fine-tuning: one inner loop, parameterised for OSVOS and e-OSVOS."""
