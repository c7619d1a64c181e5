"""Parameters: schema completeness, validation messages, TOML round trip, overrides."""

import math

import pytest

from abm.errors import ParamError
from abm.params import BY_KEY, SCHEMA, Params, parse_assignment

CONTRACT_KEYS = [
    "grid.size", "time.dt_min", "patient.weight_kg", "patient.marrow_blast_fraction",
    "patient.cd19_negative_fraction", "product.dose_per_kg", "product.affinity_kd_nM",
    "product.costimulation", "schedule.days", "schedule.fractions",
]


@pytest.mark.parametrize("key", CONTRACT_KEYS)
def test_contract_keys_exist(key):
    assert key in BY_KEY


def test_every_parameter_declares_unit_range_description_source():
    for p in SCHEMA:
        assert p.unit and p.description and p.source, p.key
        if p.type in (int, float, list):
            assert p.low is not None and p.high is not None, p.key
        p.check(p.default)  # the default itself is valid


def test_unknown_key_is_rejected_with_its_name():
    with pytest.raises(ParamError, match="unknown parameter 'grid.sizee'"):
        Params({"grid.sizee": 10})


@pytest.mark.parametrize(("typo", "nearest"), [("grid.sise", "grid.size"), ("product.dose", "product.dose_per_kg"),
                                               ("cart.kill_rate", "cart.kill_rate_per_h")])
def test_unknown_key_suggests_at_most_three_nearest_keys_and_where_to_list_all(typo, nearest):
    for build in (lambda: Params({typo: 1}), lambda: parse_assignment(f"{typo}=1")):
        with pytest.raises(ParamError) as info:
            build()
        message = str(info.value)
        suggested = message.split("did you mean ", 1)[1].split("?", 1)[0].split(", ")
        assert suggested[0] == nearest and len(suggested) <= 3
        assert "cart-abm params" in message and len(message) < 300  # not all 116 keys


def test_unknown_key_without_a_near_name_lists_no_guess():
    with pytest.raises(ParamError) as info:
        Params({"zzz.qqq": 1})
    assert "did you mean" not in str(info.value) and "docs/parameters.md" in str(info.value)


def test_out_of_range_message_names_key_value_and_range():
    with pytest.raises(ParamError) as exc:
        Params({"patient.marrow_blast_fraction": 1.5})
    text = str(exc.value)
    assert "patient.marrow_blast_fraction" in text and "1.5" in text and "[0, 0.99]" in text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(value):
    with pytest.raises(ParamError, match="product.dose_per_kg"):
        Params({"product.dose_per_kg": value})


@pytest.mark.parametrize("key,value", [("grid.size", 12.5), ("grid.size", "big"), ("grid.size", True),
                                       ("product.costimulation", "CD3"), ("schedule.days", 3.0)])
def test_wrong_types_and_choices_are_rejected(key, value):
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        Params({key: value})


def test_schedule_fractions_must_sum_to_one_and_match_days():
    with pytest.raises(ParamError, match="summing to 1"):
        Params({"schedule.days": [0.0, 1.0], "schedule.fractions": [0.5, 0.4]})
    with pytest.raises(ParamError, match="same length"):
        Params({"schedule.days": [0.0, 1.0], "schedule.fractions": [1.0]})
    ok = Params({"schedule.days": [0, 1, 2], "schedule.fractions": [0.1, 0.3, 0.6]})
    assert ok.schedule.days == [0.0, 1.0, 2.0]


def test_toml_round_trip(tmp_path):
    p = Params({"grid.size": 64, "product.costimulation": "CD28", "schedule.days": [0.0, 10.0],
                "schedule.fractions": [0.5, 0.5]})
    path = tmp_path / "p.toml"
    path.write_text(p.to_toml())
    assert Params.from_toml(path) == p


def test_malformed_toml_and_unknown_section(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nsize = 3")
    with pytest.raises(ParamError, match="not valid TOML"):
        Params.from_toml(bad)
    bad.write_text("[gird]\nsize = 30\n")
    with pytest.raises(ParamError, match=r"unknown section \[gird\]; did you mean grid\?"):
        Params.from_toml(bad)
    with pytest.raises(ParamError, match="cannot read config"):
        Params.from_toml(tmp_path / "missing.toml")


def test_overrides_parse_toml_values_and_bare_words():
    assert parse_assignment("schedule.days=[0,1,2]") == ("schedule.days", [0, 1, 2])
    assert parse_assignment('product.costimulation="CD28"') == ("product.costimulation", "CD28")
    assert parse_assignment("product.costimulation=CD28") == ("product.costimulation", "CD28")
    assert parse_assignment("grid.size=64") == ("grid.size", 64)
    with pytest.raises(ParamError, match="expected section.key=value"):
        parse_assignment("grid.size")


def test_section_attribute_access_is_read_only():
    p = Params.default()
    assert p.grid.size == p["grid.size"]
    with pytest.raises(AttributeError):
        p.grid.size = 3


def test_docs_parameter_table_is_up_to_date():
    from pathlib import Path

    from abm.params import markdown_table

    doc = Path(__file__).parents[1] / "docs" / "parameters.md"
    assert doc.read_text(encoding="utf-8") == markdown_table(), "run `python -m abm.params` to regenerate"
