"""Data: raw corpora to token shards, pre-training examples, fine-tuning task readers."""
