"""``@zasync-status``: what serves each queue, and its quota sizes."""
