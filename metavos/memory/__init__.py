"""Memory-based VOS: the memory-network protocol (`network.MemoryModel`) and
two networks that follow it, STCN-like (`network`) and XMem-style (`xmem`);
memory bank, training chain, propagation, losses.

The interface the memory-based methods build on (the network is the one
`config.memory.network` names, metavos.methods.memory_networks.NETWORKS):

  fns, params = memory_networks.build_network(config)
  out = chain.run_chain(fns, params, frame0, masks0, frames)    # training
  loss = losses.bootstrapped_ce(out.logits, labels, valid, p)
  seg = propagate.MemorySegmenter(fns, params, propagate_cfg)   # inference
  pred, stats = seg.segment(video, rng, annotated_frames=None)
"""
