"""Pure domain rules (queue, waiting-time estimate): no I/O, clock injected."""
