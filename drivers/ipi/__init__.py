"""The i-PI client driver (``aptnn-ipi``): socket protocol, bead bookkeeping, worker thread."""
