"""Test-wide settings: one torch thread (tiny models gain nothing from more, and a busy 2-core machine loses a
lot to oversubscription); ELECTRA_TEST_THREADS overrides."""

import os

import torch

torch.set_num_threads(int(os.environ.get("ELECTRA_TEST_THREADS", "1")))

import pytest  # noqa: E402

from electra.training.precision import EMULATED_BF16_MESSAGE, cpu_has_fast_bf16  # noqa: E402

# For tests that train or time bf16 at more than a toy size: where bf16 is emulated they would take minutes.
needs_native_bf16 = pytest.mark.skipif(not cpu_has_fast_bf16(), reason=EMULATED_BF16_MESSAGE)
