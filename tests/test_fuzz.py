"""Property-based fuzzing of configs and overrides: success or a clean ParamError, never a traceback."""

import math
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abm.cli import main
from abm.errors import ParamError
from abm.params import BY_KEY, SCHEMA, Params, parse_assignment
from abm.rates import build_tables

KEYS = sorted(BY_KEY)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    st.lists(st.integers(-5, 5), max_size=4),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=4))
def test_any_parameter_dict_is_accepted_or_rejected_cleanly(overrides):
    try:
        p = Params(overrides)
    except ParamError as exc:
        assert str(exc)
        return
    for key, value in overrides.items():
        if isinstance(value, float):
            assert math.isfinite(value)
        assert BY_KEY[key].check(p[key]) == p[key]
    try:
        build_tables(p, 1)
    except ParamError as exc:  # inconsistent combinations found when converting rates (e.g. too fast for dt)
        assert "expected" in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_override_string_parses_or_fails_cleanly(text):
    try:
        key, value = parse_assignment(text)
        Params({key: value})
    except ParamError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_toml_text_loads_or_fails_cleanly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_text(text, encoding="utf-8")
    try:
        Params.from_toml(path)
    except ParamError as exc:
        assert str(exc)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["--days", "--seed", "--threads", "--set", "--snapshot-every", "--checkpoint-every",
                                 "-1", "nan", "inf", "0", "1e9", "x", "grid.size=0", "time.dt_min=0.01",
                                 "cart.speed_um_per_min=20", "schedule.days=[1,0]", "=", "grid.size=3.5"]),
                max_size=6))
def test_cli_bad_arguments_never_traceback(tmp_path, capsys, args):
    out = tmp_path / "o"
    try:
        code = main(["run", "--quiet", "--out", str(out), "--backend", "cpu", *args, "--days", "-1"])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert not out.exists()


def test_every_schema_default_survives_toml_round_trip():
    text = Params.default().to_toml()
    assert Params.from_dict(tomllib.loads(text)) == Params.default()
    assert len(SCHEMA) == len(BY_KEY)


def test_unstable_speed_for_dt_is_rejected_by_name():
    with pytest.raises(ParamError, match="cart.speed_um_per_min"):
        build_tables(Params({"cart.speed_um_per_min": 20.0, "time.dt_min": 10.0}), 1)
