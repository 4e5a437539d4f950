"""Format converters: other libraries' checkpoints to ours and back (a rename table each)."""
