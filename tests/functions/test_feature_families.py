"""The lap-feature families (functions/features/families.py) are the one list of feature names."""

from __future__ import annotations

from stratx.functions.features import families
from stratx.functions.models import lap_time, pit_window, tyre_deg
from stratx.functions.schemas import LapAggression, LapFeatures


def test_every_family_name_is_a_schema_field() -> None:
    for name, family in families.LAP_FAMILIES.items():
        missing = set(family) - set(LapFeatures.model_fields)
        assert not missing, f"{name}: {missing}"
    assert set(families.AGGRESSION) <= set(LapAggression.model_fields)
    assert set(families.TRAFFIC) <= set(families.GAPS)


def test_a_lap_feature_belongs_to_at_most_one_family() -> None:
    seen: dict[str, str] = {}
    for name, family in families.LAP_FAMILIES.items():
        for feature in family:
            assert feature not in seen, f"{feature} in {seen.get(feature)} and {name}"
            seen[feature] = name


def test_recipes_take_their_inputs_from_the_families() -> None:
    assert (*families.PACE, *families.STINT, *families.TRAFFIC) == lap_time.SERVICE_FEATURES
    assert (*families.STINT, *families.PACE) == tyre_deg.SERVICE_FEATURES
    assert (*families.STINT, *families.GAPS, *families.PACE) == pit_window.SERVICE_FEATURES
