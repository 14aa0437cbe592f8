"""Schemathesis hooks for Tare's OpenAPI test (`tests/end_to_end/openapi.rs`).

`POST /api/v1/cabinets` refuses with 422 some bodies that its schema allows, for rules
JSON Schema cannot state and the document states in words (`NewLane`, and the 422
response): door and lane numbers are unique, a lane's `restock_threshold` is at most its
`capacity`, a lane's product must be registered and must not weigh like another product
on its door, and its tolerance at full capacity must stay below half the product's unit
weight. A schema cannot compare two fields, look a
product up, or count duplicates by key.

`PUT /api/v1/cabinets/{id}/doors/{door}/lanes/{lane}` (a lane swap) refuses the same
lane rules for its body: `restock_threshold` above `capacity`, a `capacity` at which the
product's items cannot be told apart, and a product that weighs like another on the door.

`POST /api/v1/campaigns` refuses an ads action that adds and removes nothing, or names
an ad id twice (in `add` objects, or in both lists): a schema cannot count across two
lists or compare the objects' ids.

`/api/v1/reconciliation/bills` refuses a `date` in the future (the providers' today):
a schema cannot compare with the clock.

`GET /api/v1/cabinets/{id}/ledger` refuses a `lane` without a `door` (lanes are numbered
per door): a schema cannot make one query parameter require another.

`filter_failure` drops exactly those refusals: a "schema-valid request rejected" failure
whose response is a 422 naming one of these rules. Every other failure is kept, so any
other schema-valid body refused (a locker's empty compartments, a capacity the schema
allows, ...) still fails the run.
"""

import json
import re

import schemathesis

LANE = r"^doors\[\d+\]\.lanes\[\d+\]\."
CROSS_FIELD_RULES = [
    (re.compile(r"^doors\[\d+\]\.door$"), ("duplicate door", "duplicate compartment")),
    (re.compile(LANE + r"lane$"), ("duplicate lane",)),
    (re.compile(LANE + r"restock_threshold$"), ("must not exceed capacity",)),
    (re.compile(LANE + r"sku$"), ("unknown product", "cannot be told apart")),
    (re.compile(LANE + r"tolerance$"), ("cannot separate items",)),
]

SWAP_PATH = "/api/v1/cabinets/{id}/doors/{door}/lanes/{lane}"
SWAP_RULES = [
    (re.compile(r"^restock_threshold$"), ("must not exceed capacity",)),
    (re.compile(r"^capacity$"), ("cannot separate items",)),
    (re.compile(r"^sku$"), ("cannot be told apart",)),
]


def _is_future_date_refusal(case, response):
    if case.operation.path != "/api/v1/reconciliation/bills" or response.status_code != 422:
        return False
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return error.get("field") == "date" and "must not be in the future" in (error.get("message") or "")


LEDGER_RULES = [(re.compile(r"^lane$"), ("needs `door`",))]

CAMPAIGN_RULES = [(re.compile(r"^action$"), ("add or remove at least one ad", "an ad id appears twice"))]


def _is_cross_field_refusal(response, rules=CROSS_FIELD_RULES):
    if response.status_code != 422:
        return False
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    field, message = error.get("field") or "", error.get("message") or ""
    return any(path.match(field) and any(m in message for m in messages) for path, messages in rules)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure except a cabinet, a lane swap or a campaign refused for a rule the schema cannot state."""
    refused_valid_cabinet = (
        failure.code == "ST202" and case.operation.method.upper() == "POST" and case.operation.path == "/api/v1/cabinets"
    )
    if failure.code == "ST202" and _is_future_date_refusal(case, response):
        return False
    refused_valid_ledger = failure.code == "ST202" and case.operation.path == "/api/v1/cabinets/{id}/ledger"
    if refused_valid_ledger and _is_cross_field_refusal(response, LEDGER_RULES):
        return False
    refused_valid_campaign = failure.code == "ST202" and case.operation.path == "/api/v1/campaigns"
    if refused_valid_campaign and _is_cross_field_refusal(response, CAMPAIGN_RULES):
        return False
    refused_valid_swap = failure.code == "ST202" and case.operation.method.upper() == "PUT" and case.operation.path == SWAP_PATH
    if refused_valid_swap and _is_cross_field_refusal(response, SWAP_RULES):
        return False
    return not (refused_valid_cabinet and _is_cross_field_refusal(response))
