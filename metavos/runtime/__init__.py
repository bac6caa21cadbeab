"""Runtime shared by every training method: one module per job.

- `checkpoint`: Orbax checkpoints and the resume order (`restore_or_init`).
- `metric_writer`: config.json, metrics.jsonl, TensorBoard and the NaN guard.
- `progress`: the rate/ETA line for any long loop.
- `sharding`: the mesh and every sharding metavos uses.
- `distributed`: multi-process start-up for TPU, GPU and CPU.
- `files`: atomic file writes.

Modules are imported explicitly (`from metavos.runtime import checkpoint`) so
that importing one does not pull in the dependencies of the others.
"""
