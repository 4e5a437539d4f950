"""Fine-tuning tasks: the shared loop (``runner``), heads, and the task definitions."""
