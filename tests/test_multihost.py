"""Multi-host for real: 2 JAX processes x 4 CPU devices = 1 process x 8.

Each of the two processes starts through metavos.runtime.distributed (a
coordinator on a free localhost port), samples only its own share of the
meta-batch and feeds it through sharding.shard_batch; one jitted e-OSVOS
meta-training step (metavos.methods.eosvos.make_update, the one `main` runs)
must give the parameters that one process with 8 devices gets from the
whole batch.
"""

import textwrap

import numpy as np

from _multiprocess import run_alone_and_joined
from metavos.data import synthetic

NUM_PROCESSES = 2
BATCH = 8

_WORKER = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from configs import eosvos as eosvos_config
    from metavos.data import sampling
    from metavos.methods import eosvos, setup
    from metavos.runtime import distributed, sharding

    data_root, out, batch_size, shares = sys.argv[1:5]
    batch_size, shares = int(batch_size), int(shares)
    info = distributed.initialize(None)  # METAVOS_* from the environment
    config = eosvos_config.get_config("smoke")
    config.data.root = data_root
    config.train.batch_size = batch_size
    config.meta.num_inner_steps = 1
    config.meta.support_copies = 1
    mesh = sharding.make_mesh()
    assert mesh.size == 8, mesh
    model = setup.build_model(config, config.seed)
    sampler = sampling.TaskSampler(setup.train_videos(config, data_root),
                                   config.meta.num_query, config.seed)
    # The global batch is the `shares` process shares of step 0, in order;
    # each process loads only its own (all of them when it is alone).
    mine = range(shares) if info.process_count == 1 else [info.process_index]
    parts = [sampler.sample(0, batch_size, p, shares) for p in mine]
    local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert len(local["support_image"]) == batch_size // info.process_count
    batch = sharding.shard_batch(local, mesh)
    assert batch["support_image"].shape[0] == batch_size
    mp = eosvos.initial_meta_params(config, model.params)
    before = jax.tree.map(np.asarray, mp)  # the update donates its input
    state = sharding.replicate(
        {"meta_params": mp, "opt_state": eosvos.make_optimizer(config).init(mp),
         "step": np.zeros((), np.int32)}, mesh)
    update = eosvos.make_update(config, model, mesh)
    state, metrics = update(state, batch,
                            jax.random.fold_in(jax.random.key(config.seed), 0))
    # Replicated arrays: this process's first copy (a multi-process array
    # cannot be fetched whole).
    local_copy = lambda x: np.asarray(getattr(x, "addressable_data",
                                              lambda i: x)(0))
    leaves = jax.tree_util.tree_flatten_with_path(
        {"after": state["meta_params"], "before": before})[0]
    np.savez(out, loss=local_copy(metrics["loss"]),
             **{jax.tree_util.keystr(p): local_copy(x) for p, x in leaves})
    print("DONE", info.process_index, info.process_count, jax.device_count())
""")


def test_two_processes_take_the_meta_step_of_one(tmp_path):
  root = str(synthetic.generate(tmp_path / "data", num_videos=3, num_frames=6,
                                height=48, width=64, max_objects=2, seed=0))
  outputs = run_alone_and_joined(
      tmp_path, _WORKER,
      lambda name: [root, tmp_path / f"{name}.npz", BATCH, NUM_PROCESSES],
      NUM_PROCESSES)
  for name, output in outputs.items():
    count = 1 if name == "reference" else NUM_PROCESSES
    assert f"DONE {0 if count == 1 else name[-1]} {count} 8" in output

  ref = np.load(tmp_path / "reference.npz")
  after = sorted(k for k in ref.files if k.startswith("['after']"))
  moved = max(float(np.abs(ref[k] - ref[k.replace("after", "before")]).max())
              for k in after)
  assert moved > 1e-4, moved  # the step changed the meta-parameters
  for p in range(NUM_PROCESSES):
    got = np.load(tmp_path / f"process_{p}.npz")
    assert sorted(got.files) == sorted(ref.files)
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-6)
    for k in after:
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-6, atol=1e-6,
                                 err_msg=f"process {p}: {k}")
