"""Rule evaluation: may this caller call this endpoint?

A :class:`RuleSet` sorts its rules once — highest ``priority`` first; among equal priorities
the more specific resource first (the service decides before the endpoint; an exact name is
more specific than a prefix such as ``Greeter.*``, a longer prefix more than a shorter one,
and any prefix more than ``*``); then by rule ``id`` — and the first rule whose resource
matches the called ``service``/``endpoint`` and whose scope matches the caller decides:

- scope :data:`~micro.auth.PUBLIC` (``""``) matches every caller, even one without an
  account; :data:`~micro.auth.ANY` (``"*"``) matches every account; any other scope matches
  the accounts that have it;
- ``grant``: the call goes ahead; ``deny``: refused, the detail names the rule;
- no rule matches: refused.

A refusal is ``unauthorized`` (401) when there is no account (logging in may help) and
``forbidden`` (403) when there is one. Endpoints marked ``@public`` (``public=True``) add
the implicit rule ``{id: "public", scope: PUBLIC, resource: service/endpoint, access: grant,
priority: 0}``, sorted among the others like any rule.

Decisions are cached per (scopes, service, endpoint, public) in a bounded dictionary: a rule
set is immutable once built.
"""

from __future__ import annotations

from collections.abc import Sequence

from micro.auth import ADMIN, ANY, ID, PUBLIC, SERVICE, Account, Claims, Resource, Rule
from micro.errors import forbidden, unauthorized

__all__ = ["DEFAULT_RULES", "PUBLIC_RULE_ID", "RuleSet", "matches"]

PUBLIC_RULE_ID = "public"
"""The id of the implicit rule granting access to an endpoint marked ``@public``."""

DEFAULT_RULES: list[Rule] = [
    Rule("admin", ADMIN, Resource("*", "*"), "grant", 0),
    Rule("service", SERVICE, Resource("*", "*"), "grant", 0),
    Rule("auth-public", PUBLIC, Resource(ID, "Auth.Token"), "grant", 0),
    Rule("auth-jwks", PUBLIC, Resource(ID, "Auth.Jwks"), "grant", 0),
    Rule("auth-exchange", PUBLIC, Resource(ID, "Auth.Exchange"), "grant", 0),
    Rule("health", PUBLIC, Resource("*", "Debug.Health"), "grant", 0),
    *(
        Rule(f"auth-self-{endpoint.split('.')[1].lower()}", ANY, Resource(ID, endpoint))
        for endpoint in (
            "Auth.Revoke",
            "Auth.Inspect",
            "Auth.CreateKey",
            "Auth.ListKeys",
            "Auth.DeleteKey",
        )
    ),
]
"""The rules an auth service starts with: administrators and services may call anything;
everyone may log in, refresh, exchange an API key, read the JWKS and ask any service's
health (``Debug.Stats`` and ``Debug.Trace`` stay private); every account may end its own
sessions, inspect its token and manage its own API keys (the handler checks ownership)."""

_CACHE_SIZE = 4096

_Key = tuple[int, int, int, int, int, str]


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern``: ``*`` matches anything, a trailing ``*`` a
    prefix (``Foo.*``), anything else only itself."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def _specificity(pattern: str) -> tuple[int, int]:
    """Higher is more specific: exact (2) > prefix (1, the longer the more) > ``*`` (0)."""
    if pattern == "*":
        return (0, 0)
    if pattern.endswith("*"):
        return (1, len(pattern) - 1)
    return (2, 0)


def _sort_key(rule: Rule) -> _Key:
    service = _specificity(rule.resource.service)
    endpoint = _specificity(rule.resource.endpoint)
    return (-rule.priority, -service[0], -service[1], -endpoint[0], -endpoint[1], rule.id)


def _scope_matches(scope: str, scopes: frozenset[str] | None) -> bool:
    if scope == PUBLIC:
        return True
    if scopes is None:
        return False
    return scope == ANY or scope in scopes


class RuleSet:
    """An immutable, sorted set of rules that decides calls."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        ordered = sorted(rules, key=_sort_key)
        self._rules: list[tuple[_Key, Rule]] = [(_sort_key(r), r) for r in ordered]
        self._cache: dict[
            tuple[tuple[str, ...] | None, str, str, bool], tuple[bool, Rule | None]
        ] = {}

    @property
    def rules(self) -> list[Rule]:
        """The rules in the order they are tried."""
        return [r for _, r in self._rules]

    def decide(
        self,
        scopes: Sequence[str] | None,
        service: str,
        endpoint: str,
        *,
        public: bool = False,
    ) -> tuple[bool, Rule | None]:
        """``(granted, deciding rule)`` for a caller with ``scopes`` (``None``: no account)
        calling ``service``/``endpoint``; ``(False, None)`` when no rule matches."""
        key = (None if scopes is None else tuple(scopes), service, endpoint, public)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        result = self._decide(
            None if scopes is None else frozenset(scopes), service, endpoint, public
        )
        if len(self._cache) >= _CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = result
        return result

    def _decide(
        self, scopes: frozenset[str] | None, service: str, endpoint: str, public: bool
    ) -> tuple[bool, Rule | None]:
        implicit: Rule | None = None
        implicit_key: _Key | None = None
        if public:
            implicit = Rule(PUBLIC_RULE_ID, PUBLIC, Resource(service, endpoint), "grant", 0)
            implicit_key = _sort_key(implicit)
        for key, rule in self._rules:
            if implicit is not None and implicit_key is not None and implicit_key < key:
                return True, implicit
            if (
                _scope_matches(rule.scope, scopes)
                and matches(rule.resource.service, service)
                and matches(rule.resource.endpoint, endpoint)
            ):
                return rule.access == "grant", rule
        if implicit is not None:
            return True, implicit
        return False, None

    def check(
        self,
        account: Claims | Account | None,
        service: str,
        endpoint: str,
        *,
        public: bool = False,
    ) -> None:
        """Return if ``account`` (``None``: no account) may call ``service``/``endpoint``,
        else raise ``unauthorized`` (no account) or ``forbidden`` naming the call and the
        rule that denied it, if one did."""
        granted, rule = self.decide(
            None if account is None else account.scopes, service, endpoint, public=public
        )
        if granted:
            return
        if rule is not None:
            detail = f"call to {service} {endpoint} denied by rule {rule.id!r}"
        elif account is None:
            detail = f"call to {service} {endpoint} requires an account: log in first"
        else:
            who = account.id if isinstance(account, Account) else account.sub
            detail = f"no rule grants {who} access to {service} {endpoint}"
        raise (unauthorized if account is None else forbidden)(ID, detail)
