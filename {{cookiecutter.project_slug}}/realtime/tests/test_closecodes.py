"""The close-code registry: one meaning per code, application codes only."""

from __future__ import annotations

import pytest

from realtime import closecodes


def test_the_layers_codes_are_registered_once_each():
    codes = closecodes.registered()
    assert [c.code for c in codes] == sorted({c.code for c in codes})
    assert {c.code for c in codes} >= {4401, 4403, 4404, 4408, 4409, 4429, 4503}


def test_registering_again_under_the_same_name_is_a_no_op():
    assert closecodes.register(4404, "not_found", "no consumer for this path") == 4404


def test_a_taken_code_or_a_code_outside_the_range_is_refused():
    with pytest.raises(ValueError, match="already registered as 'not_found'"):
        closecodes.register(4404, "missing", "another meaning")
    with pytest.raises(ValueError, match="not an application code"):
        closecodes.register(1000, "normal", "not ours to give")
