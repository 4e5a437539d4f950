"""Data readers: pre-training corpora and fine-tuning task files."""
