"""The training machinery shared by pre-training and fine-tuning."""
