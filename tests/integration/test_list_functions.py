"""ListFunctions: ordering, Marker/MaxItems pagination, the paginator, MaxItems bounds.

This module's server holds exactly the functions created by the `functions` fixture."""

from __future__ import annotations

import random

import pytest

import kappa_helpers as h


@pytest.fixture(scope="module")
def functions(server, client):
    names = [f"list-{c}-{i}" for i, c in enumerate("qwertyuiopasd")]
    created = {}
    for name in random.sample(names, len(names)):
        created[name] = h.create_function(client, name, h.unique_zip())
    return created


def test_empty_server_lists_nothing(server_factory):
    srv = server_factory()
    resp = srv.client().list_functions()
    assert resp["Functions"] == []
    assert "NextMarker" not in resp or not resp["NextMarker"]


def test_list_all_sorted_by_name(client, functions):
    resp = client.list_functions()
    names = [f["FunctionName"] for f in resp["Functions"]]
    assert names == sorted(functions)
    assert not resp.get("NextMarker")
    for item in resp["Functions"]:
        created = functions[item["FunctionName"]]
        for key in ("FunctionArn", "CodeSha256", "CodeSize", "RevisionId", "Runtime", "Handler", "Version"):
            assert item[key] == created[key], (item["FunctionName"], key)


@pytest.mark.parametrize("page_size", [1, 2, 5, 13, 50])
def test_manual_marker_pagination(client, functions, page_size):
    seen = []
    marker = None
    for _ in range(len(functions) + 2):
        kwargs = {"MaxItems": page_size}
        if marker:
            kwargs["Marker"] = marker
        resp = client.list_functions(**kwargs)
        assert len(resp["Functions"]) <= page_size
        seen.extend(f["FunctionName"] for f in resp["Functions"])
        marker = resp.get("NextMarker")
        if not marker:
            break
    else:
        pytest.fail("pagination did not terminate")
    assert seen == sorted(functions)


@pytest.mark.parametrize("page_size", [1, 3, 4])
def test_paginator_returns_everything_once(client, functions, page_size):
    seen = []
    for page in client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": page_size}):
        seen.extend(f["FunctionName"] for f in page["Functions"])
    assert len(seen) == len(set(seen)), f"duplicates: {seen}"
    assert sorted(seen) == sorted(functions)
    assert seen == sorted(seen)


def test_paginator_default(client, functions):
    assert [f["FunctionName"] for f in h.list_all_functions(client)] == sorted(functions)


@pytest.mark.parametrize("max_items", [1, 10000])
def test_max_items_bounds_accepted(raw_client, functions, max_items):
    resp = raw_client.list_functions(MaxItems=max_items)
    assert len(resp["Functions"]) == min(max_items, len(functions))


@pytest.mark.parametrize("max_items", [0, 10001])
def test_max_items_out_of_range_rejected(raw_client, functions, max_items):
    err = h.api_error(raw_client, lambda: raw_client.list_functions(MaxItems=max_items), 400, "ValidationException")
    expected = "greater than or equal to 1" if max_items == 0 else "less than or equal to 10000"
    assert expected in err.message, err.message
