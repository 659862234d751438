from __future__ import annotations

import pytest

from cmamd.item_keys import (
    ID_MAX,
    ItemKind,
    ids_of,
    is_order_key,
    is_position_key,
    order_key,
    parse_key,
    position_key,
    split_key,
)


def test_keys_name_positions_and_orders() -> None:
    assert position_key(123) == "p123"
    assert order_key(45) == "o45"
    assert parse_key("p123") == (ItemKind.POSITION, 123)
    assert parse_key("o45") == ("o", 45)  # a plain tuple compares equal, as before
    assert is_position_key("p1") and not is_position_key("o1")
    assert is_order_key("o1") and not is_order_key("p1")


@pytest.mark.parametrize("item_id", [0, 1, 987654321, ID_MAX])
def test_keys_round_trip(item_id: int) -> None:
    assert parse_key(position_key(item_id)) == (ItemKind.POSITION, item_id)
    assert parse_key(order_key(item_id)) == (ItemKind.ORDER, item_id)


@pytest.mark.parametrize(
    "text",
    [
        *("", "p", "o", "x1", "P1", "p01", "o00", "p-1", "p+1", "p1.0", " p1", "p1\n", "po1"),
        "p\u0661",  # an Arabic-Indic digit one
        f"p{ID_MAX + 1}",
        f"o{10**19}",
    ],
)
def test_anything_else_is_not_a_key(text: str) -> None:
    assert parse_key(text) is None
    assert not is_position_key(text) and not is_order_key(text)
    with pytest.raises(ValueError, match="not a master item key"):
        split_key(text)


def test_split_key_names_the_parts() -> None:
    kind, item_id = split_key("o7")
    assert (kind, item_id) == (ItemKind.ORDER, 7)


def test_ids_of_keeps_one_kind_and_leaves_out_non_keys() -> None:
    keys = ["p1", "o2", "p3", "o4", "junk", "p05"]
    assert ids_of(keys, ItemKind.POSITION) == {1, 3}
    assert ids_of(keys, ItemKind.ORDER) == {2, 4}
