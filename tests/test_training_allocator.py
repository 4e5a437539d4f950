import sys

import pytest

from electra.training.allocator import tune_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_tune_malloc_is_accepted_by_glibc():
    assert tune_malloc() is True
