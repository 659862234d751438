from __future__ import annotations

import pytest

from cmamd.replication.labels import (
    CLIENT_ORDER_ID_MAX,
    LABEL_MAX,
    client_order_id,
    client_order_instance,
    label,
    parse_client_order_id,
    parse_label,
)

BIGGEST = 2**63 - 1


@pytest.mark.parametrize("key", ["p1", "o987654321", f"p{BIGGEST}"])
def test_labels_round_trip(key: str) -> None:
    text = label(44556677, key)
    assert text == f"cm:44556677:{key}"
    assert parse_label(text) == (44556677, key)


def test_label_fits_the_protocol_limit_for_the_largest_ids() -> None:
    assert len(label(BIGGEST, f"o{BIGGEST}")) <= LABEL_MAX


@pytest.mark.parametrize(
    "text",
    [
        "",
        "my manual trade",
        "cm:",
        "cm:1",
        "cm:1:",
        "cm:abc:p1",
        "cm:1:x1",
        "cm:01:p1",  # two spellings of one id would make two copies look like different items
        "cm:1:p01",
        "CM:1:p1",
        "cm:1:p1 ",
        "cm:1:p1:extra",
        "xcm:1:p1",
        f"cm:{2**63}:p1",
        f"cm:1:p{2**63}",
    ],
)
def test_labels_not_made_by_cmamd_are_ignored(text: str) -> None:
    assert parse_label(text) is None


def test_label_refuses_what_it_could_not_parse_back() -> None:
    with pytest.raises(ValueError):
        label(1, "q1")
    with pytest.raises(ValueError):
        label(-1, "p1")


def test_client_order_ids_are_deterministic_short_and_parse_back() -> None:
    first = client_order_id(44556677, "p123", 1)
    assert first == client_order_id(44556677, "p123", 1) == "cm1-44556677-p123"
    assert client_order_id(44556677, "p123", 2) != first
    assert parse_client_order_id(first) == (44556677, "p123", 1)
    longest = client_order_id(BIGGEST, f"o{BIGGEST}", 9_999_999)
    assert len(longest) <= CLIENT_ORDER_ID_MAX
    assert parse_client_order_id(longest) == (BIGGEST, f"o{BIGGEST}", 9_999_999)


def test_client_order_id_rejects_bad_input_and_foreign_ids() -> None:
    with pytest.raises(ValueError):
        client_order_id(1, "p1", 0)
    with pytest.raises(ValueError):
        client_order_id(1, "nope", 1)
    with pytest.raises(ValueError):
        client_order_id(BIGGEST, f"o{BIGGEST}", 10**9)  # would exceed 50 characters
    too_big = [f"cm1-{2**63}-p1", f"cm1-1-p{2**63}", f"cm1-1-o{2**63}-k3x9"]
    for text in ["", "cm0-1-p1", "cm1-1-q1", "order-42", "cm1-01-p1", "cm1-1-p01", *too_big]:
        assert parse_client_order_id(text) is None


def test_client_order_ids_name_the_instance_where_it_fits() -> None:
    named = client_order_id(44556677, "p123", 3, "k3x9")
    assert named == "cm3-44556677-p123-k3x9"
    assert parse_client_order_id(named) == (44556677, "p123", 3)
    assert client_order_instance(named) == "k3x9"
    assert client_order_instance("cm3-44556677-p123") is None  # the older form
    assert client_order_instance("cm3-44556677-p123-K3X9") is None
    longest = client_order_id(BIGGEST, f"o{BIGGEST}", 9_999_999, "k3x9")
    assert len(longest) <= CLIENT_ORDER_ID_MAX and client_order_instance(longest) is None
    with pytest.raises(ValueError):
        client_order_id(1, "p1", 1, "toolong")
