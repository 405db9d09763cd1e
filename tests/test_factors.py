import pytest

from selfstudy.errors import UserError
from selfstudy.factors import PAPER_DATASETS, Factors


@pytest.mark.parametrize("spec, bits, letters", [
    ("0000", "0000", "----"),
    ("1111", "1111", "TCVL"),
    ("0110", "0110", "-CV-"),
    ("-CV-", "0110", "-CV-"),
    ("tcvl", "1111", "TCVL"),
    ("T--L", "1001", "T--L"),
])
def test_both_spellings(spec, bits, letters):
    f = Factors.parse(spec)
    assert f.bits == bits and f.letters == letters
    assert Factors.parse(f.bits) == Factors.parse(f.letters) == f


def test_fields_follow_tcvl_order():
    f = Factors.parse("1010")
    assert (f.texture, f.colour, f.viewpoint, f.lighting) == (True, False, True, False)


@pytest.mark.parametrize("bad", ["TCXL", "TCV", "11111", "2000", "CTVL", "", "T-V"])
def test_bad_strings_name_the_problem(bad):
    with pytest.raises(UserError, match="factor string"):
        Factors.parse(bad)


def test_paper_datasets_are_twelve_distinct_and_parse():
    assert len(set(PAPER_DATASETS)) == 12
    assert {Factors.parse(s).bits for s in PAPER_DATASETS} == set(PAPER_DATASETS)
