"The package imports and its argument checks name the argument."
import os
import digseg
from digseg.config import check_int


def test_checks_name_the_argument():
    import pytest
    with pytest.raises(ValueError, match="`ensemble_size` must be >= 1"):
        check_int("ensemble_size", 0, 1)
