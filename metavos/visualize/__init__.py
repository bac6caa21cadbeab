"""Pictures of results: mask overlays, J-per-frame plots, an HTML report."""
