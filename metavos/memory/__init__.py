"""Memory-based VOS (STCN-style): network, memory bank, training chain,
propagation, losses.

The interface the memory-based methods build on:

  fns, params = network.build(config.memory, nnx.Rngs(seed))  # or make_fns
  out = chain.run_chain(fns, params, frame0, masks0, frames)    # training
  loss = losses.bootstrapped_ce(out.logits, labels, valid, p)
  seg = propagate.MemorySegmenter(fns, params, propagate_cfg)   # inference
  pred, stats = seg.segment(video, rng, annotated_frames=None)
"""
