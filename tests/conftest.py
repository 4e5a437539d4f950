"""Test-wide settings: one torch thread (tiny models gain nothing from more, and a busy 2-core machine loses a
lot to oversubscription); ELECTRA_TEST_THREADS overrides."""

import os

import torch

torch.set_num_threads(int(os.environ.get("ELECTRA_TEST_THREADS", "1")))
