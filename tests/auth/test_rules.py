"""Rule evaluation: matching, ordering, scopes, public endpoints and the default rules —
table-driven."""

from __future__ import annotations

import pytest

from micro.auth import ADMIN, ANY, PUBLIC, SERVICE, Account, Claims, Resource, Rule
from micro.auth.rules import DEFAULT_RULES, PUBLIC_RULE_ID, RuleSet, matches
from micro.errors import MicroError


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "anything", True),
        ("*", "", True),
        ("greeter", "greeter", True),
        ("greeter", "greeter2", False),
        ("greeter", "Greeter", False),
        ("Greeter.*", "Greeter.Hello", True),
        ("Greeter.*", "Greeter.", True),
        ("Greeter.*", "Greeter", False),
        ("Greeter.*", "GreeterX.Hello", False),
        ("Gree*", "GreeterX.Hello", True),
        ("Greeter.Hello", "Greeter.Hello", True),
        ("Greeter.Hello", "Greeter.Hello2", False),
    ],
)
def test_matches(pattern: str, value: str, expected: bool) -> None:
    assert matches(pattern, value) is expected


RULES = [
    Rule("admin", ADMIN, Resource("*", "*"), "grant", 0),
    Rule("greeter-any", ANY, Resource("greeter", "Greeter.*"), "grant", 0),
    Rule("greeter-secret-deny", ANY, Resource("greeter", "Greeter.Secret"), "deny", 10),
    Rule("greeter-secret-ops", "ops", Resource("greeter", "Greeter.Secret"), "grant", 20),
    Rule("public-hello", PUBLIC, Resource("greeter", "Greeter.Hello"), "grant", 0),
    Rule("blocked", PUBLIC, Resource("blocked", "*"), "deny", 100),
    Rule("prefix-short", "x", Resource("svc", "A.*"), "deny", 0),
    Rule("prefix-long", "x", Resource("svc", "A.B*"), "grant", 0),
    Rule("svc-star-ep-exact", "y", Resource("*", "Store.Read"), "deny", 0),
    Rule("svc-exact-ep-star", "y", Resource("store", "*"), "grant", 0),
    Rule("tie-b", "z", Resource("tie", "T.X"), "grant", 0),
    Rule("tie-a", "z", Resource("tie", "T.X"), "deny", 0),
    Rule("closed", PUBLIC, Resource("svc", "Closed.Call"), "deny", 0),
    Rule("open-beats-public", PUBLIC, Resource("svc", "Open.High"), "deny", 1),
]

NONE = None  # no account

# (scopes or None, service, endpoint, public, expected)
# expected: ("grant", rule id) | ("deny", rule id) | ("none", None): no rule matched
CASES: list[tuple[list[str] | None, str, str, bool, tuple[str, str | None]]] = [
    # administrators may call anything ...
    ([ADMIN], "anything", "Any.Thing", False, ("grant", "admin")),
    # ... except what a higher-priority deny refuses (deny beats grant at higher priority)
    ([ADMIN], "greeter", "Greeter.Secret", False, ("deny", "greeter-secret-deny")),
    # an even higher grant for a specific scope beats that deny
    (["ops"], "greeter", "Greeter.Secret", False, ("grant", "greeter-secret-ops")),
    ([ADMIN, "ops"], "greeter", "Greeter.Secret", False, ("grant", "greeter-secret-ops")),
    # ANY matches every account, even one without scopes, but never "no account"
    ([], "greeter", "Greeter.Hi", False, ("grant", "greeter-any")),
    (NONE, "greeter", "Greeter.Hi", False, ("none", None)),
    # PUBLIC matches no account and accounts alike; the exact resource sorts first
    (NONE, "greeter", "Greeter.Hello", False, ("grant", "public-hello")),
    ([], "greeter", "Greeter.Hello", False, ("grant", "public-hello")),
    # a public deny at top priority refuses everyone
    (NONE, "blocked", "X.Y", False, ("deny", "blocked")),
    ([ADMIN], "blocked", "X.Y", False, ("deny", "blocked")),
    ([ADMIN], "blocked", "X.Y", True, ("deny", "blocked")),  # @public loses too (priority 0)
    # no rule matches
    (NONE, "other", "Other.Call", False, ("none", None)),
    (["nobody"], "other", "Other.Call", False, ("none", None)),
    (["x"], "svc", "B.Call", False, ("none", None)),
    # prefixes: the longer prefix is more specific
    (["x"], "svc", "A.Bc", False, ("grant", "prefix-long")),
    (["x"], "svc", "A.C", False, ("deny", "prefix-short")),
    # the service decides specificity before the endpoint
    (["y"], "store", "Store.Read", False, ("grant", "svc-exact-ep-star")),
    (["y"], "other", "Store.Read", False, ("deny", "svc-star-ep-exact")),
    # complete ties: the rule id decides
    (["z"], "tie", "T.X", False, ("deny", "tie-a")),
    # @public endpoints: the implicit grant for everyone at priority 0
    (NONE, "svc", "Open.Call", True, ("grant", PUBLIC_RULE_ID)),
    (["nobody"], "svc", "Open.Call", True, ("grant", PUBLIC_RULE_ID)),
    (["x"], "svc", "A.Bc", True, ("grant", PUBLIC_RULE_ID)),  # exact beats prefix
    (NONE, "svc", "Open.High", True, ("deny", "open-beats-public")),  # higher priority
    (NONE, "svc", "Closed.Call", True, ("deny", "closed")),  # tie: "closed" < "public"
    (NONE, "svc", "Open.Call", False, ("none", None)),
]


@pytest.mark.parametrize(("scopes", "service", "endpoint", "public", "expected"), CASES)
def test_decide(
    scopes: list[str] | None,
    service: str,
    endpoint: str,
    public: bool,
    expected: tuple[str, str | None],
) -> None:
    rules = RuleSet(RULES)
    for _ in range(2):  # the second answer comes from the cache
        granted, rule = rules.decide(scopes, service, endpoint, public=public)
        outcome, rule_id = expected
        assert granted is (outcome == "grant")
        assert (rule.id if rule else None) == rule_id
        if rule is not None and rule.id == PUBLIC_RULE_ID:
            assert rule == Rule(PUBLIC_RULE_ID, PUBLIC, Resource(service, endpoint), "grant", 0)


@pytest.mark.parametrize(("scopes", "service", "endpoint", "public", "expected"), CASES)
def test_check(
    scopes: list[str] | None,
    service: str,
    endpoint: str,
    public: bool,
    expected: tuple[str, str | None],
) -> None:
    rules = RuleSet(RULES)
    account = None if scopes is None else Claims(sub="bob", namespace="micro", scopes=scopes)
    outcome, rule_id = expected
    if outcome == "grant":
        rules.check(account, service, endpoint, public=public)
        return
    with pytest.raises(MicroError) as e:
        rules.check(account, service, endpoint, public=public)
    assert e.value.id == "auth"
    if account is None:
        assert (e.value.code, e.value.status) == ("unauthorized", 401)
    else:
        assert (e.value.code, e.value.status) == ("forbidden", 403)
    if outcome == "deny":
        assert e.value.detail == f"call to {service} {endpoint} denied by rule {rule_id!r}"
    elif account is None:
        assert e.value.detail == f"call to {service} {endpoint} requires an account: log in first"
    else:
        assert e.value.detail == f"no rule grants bob access to {service} {endpoint}"


def test_check_takes_accounts_and_claims() -> None:
    rules = RuleSet(RULES)
    rules.check(Account("carol", scopes=["ops"]), "greeter", "Greeter.Secret")
    with pytest.raises(MicroError) as e:
        rules.check(Account("carol", scopes=["nobody"]), "other", "Other.Call")
    assert e.value.detail == "no rule grants carol access to other Other.Call"
    rules.check(Claims(sub="dave", namespace="n", scopes=["ops"]), "greeter", "Greeter.Secret")


def test_cache_keeps_no_account_apart_from_no_scopes() -> None:
    rules = RuleSet(RULES)
    assert rules.decide([], "greeter", "Greeter.Hi")[0] is True
    assert rules.decide(None, "greeter", "Greeter.Hi")[0] is False
    assert rules.decide([], "greeter", "Greeter.Hi")[0] is True
    assert rules.decide(None, "svc", "Open.Call")[0] is False
    assert rules.decide(None, "svc", "Open.Call", public=True)[0] is True
    assert rules.decide(None, "svc", "Open.Call")[0] is False


def test_rules_are_sorted_once() -> None:
    rules = RuleSet(RULES)
    assert [r.id for r in rules.rules] == [
        "blocked",  # priority 100
        "greeter-secret-ops",  # 20
        "greeter-secret-deny",  # 10
        "open-beats-public",  # 1
        # priority 0: exact service first, then exact endpoint, longer prefix, then id
        "closed",
        "public-hello",
        "tie-a",
        "tie-b",
        "greeter-any",  # longer prefix
        "prefix-long",
        "prefix-short",
        "svc-exact-ep-star",
        "svc-star-ep-exact",
        "admin",
    ]


def test_empty_rule_set_refuses_everything_but_public_endpoints() -> None:
    rules = RuleSet([])
    with pytest.raises(MicroError) as e:
        rules.check(None, "a", "B.C")
    assert e.value.status == 401
    with pytest.raises(MicroError) as e:
        rules.check(Account("root", scopes=[ADMIN]), "a", "B.C")
    assert e.value.status == 403
    rules.check(None, "a", "B.C", public=True)


def test_decision_cache_is_bounded() -> None:
    rules = RuleSet(RULES)
    for i in range(5000):
        rules.decide([], "greeter", f"Greeter.M{i}")
    assert len(rules._cache) <= 4096
    assert rules.decide([], "greeter", "Greeter.M0") == (True, RULES[1])


# -- the default rules -----------------------------------------------------------------------

USER = Claims(sub="u", namespace="micro")
DEFAULT_CASES: list[tuple[Claims | None, str, str, str | None]] = [
    # (account, service, endpoint, granting rule id or None: refused)
    (Claims(sub="admin", namespace="micro", scopes=[ADMIN]), "store", "Store.Write", "admin"),
    (Claims(sub="admin", namespace="micro", scopes=[ADMIN]), "auth", "Auth.Delete", "admin"),
    (Claims(sub="svc", namespace="micro", type="service", scopes=[SERVICE]), "x", "Y.Z", "service"),
    (None, "auth", "Auth.Token", "auth-public"),
    (None, "auth", "Auth.Jwks", "auth-jwks"),
    (None, "auth", "Auth.Exchange", "auth-exchange"),
    (USER, "auth", "Auth.Token", "auth-public"),
    (None, "greeter", "Debug.Health", "health"),
    (USER, "store", "Debug.Health", "health"),
    (None, "greeter", "Debug.Stats", None),
    (None, "greeter", "Debug.Trace", None),
    (USER, "greeter", "Debug.Trace", None),
    (None, "auth", "Auth.Inspect", None),
    (USER, "auth", "Auth.Generate", None),
    (None, "other", "Auth.Token", None),  # only the auth service's Auth.Token is public
    (USER, "greeter", "Greeter.Hello", None),
]


@pytest.mark.parametrize(("account", "service", "endpoint", "rule_id"), DEFAULT_CASES)
def test_default_rules(
    account: Claims | None, service: str, endpoint: str, rule_id: str | None
) -> None:
    rules = RuleSet(DEFAULT_RULES)
    granted, rule = rules.decide(None if account is None else account.scopes, service, endpoint)
    assert granted is (rule_id is not None)
    assert (rule.id if rule else None) == rule_id
    if rule_id is None:
        with pytest.raises(MicroError) as e:
            rules.check(account, service, endpoint)
        assert e.value.status == (401 if account is None else 403)
    else:
        rules.check(account, service, endpoint)


def test_default_rule_ids_are_unique() -> None:
    ids = [r.id for r in DEFAULT_RULES]
    assert len(ids) == len(set(ids))
