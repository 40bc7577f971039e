"The package imports, exposes its version, and every test runs offline."
import os
import digseg
from digseg.config import check_int


def test_version_and_offline():
    assert digseg.__version__
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_checks_name_the_argument():
    import pytest
    with pytest.raises(ValueError, match="`ensemble_size` must be >= 1"):
        check_int("ensemble_size", 0, 1)
