"""How long DNS takes to fail or to catch up, derived from a pod's actual resolv.conf and the cluster's DNS profile.

Pure: resolv.conf text and a :class:`~pytest_natsnet.dnsprofile.DnsProfile` in, names and seconds out. Waits in
the suites should come from here instead of constants. The resolver rules are the two clients that matter:

- **Go** (``net/dnsclient_unix.go`` ``nameList``, ``dnsconfig_unix.go``; nats-server is a pure-Go binary, so its
  route lookups use it): a rooted name is tried alone; a name with at least ``ndots`` dots is tried as is first,
  then with each search suffix; otherwise the suffixes first and the bare name last. Every name is asked
  (A and AAAA in parallel) ``attempts`` times on each nameserver with ``timeout`` each, and a timed-out name
  does NOT stop the list. Defaults ``ndots:1 timeout:5 attempts:2``; ndots is capped at 15, at most 3
  nameservers are read.
- **glibc** (``resolv/res_query.c`` ``__res_context_search``, ``resolv/res_send.c`` ``send_dg``; the probe's
  getaddrinfo and nats-py): the same order, but a name that times out ends the search list ("anything else
  implies that we're done"); only the bare name is still tried afterwards if it was not tried first. Per
  nameserver index ``i`` one try waits ``timeout`` for the first and ``(timeout << i) / count`` for the others,
  repeated ``attempts`` times. Caps: timeout 30, attempts 5, ndots 15, 3 nameservers.

When DNS is blocked (packets dropped by a NetworkPolicy), a lookup gives up after the sum of its names' waits:
with the kind default (three cluster domains + one runner domain, ndots:5) Go takes 5 names x 2 x 5 s = 50 s for
``nats-0.nats-headless``, glibc 2 x 2 x 5 s = 20 s.

Neither client caches answers; CoreDNS's cache does (per replica). A changed record can therefore be answered
the old way for as long as the cache keeps the entry: :func:`stale_seconds`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pytest_natsnet.dnsprofile import DnsProfile, is_cached

Flavour = Literal["go", "glibc"]
Outcome = Literal["answer", "nxdomain", "nodata", "servfail", "timeout"]
MAX_NAMESERVERS = 3
MAX_NDOTS = 15
GLIBC_MAX_TIMEOUT = 30
GLIBC_MAX_ATTEMPTS = 5
DEFAULTS = {"ndots": 1, "timeout": 5, "attempts": 2}


@dataclass(frozen=True)
class ResolvConf:
    """What a resolver reads from ``/etc/resolv.conf`` (before its own caps)."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = DEFAULTS["ndots"]
    timeout: int = DEFAULTS["timeout"]
    attempts: int = DEFAULTS["attempts"]
    options: tuple[str, ...] = field(default_factory=tuple)
    """Every option as written (``ndots:5``, ``rotate``, ...)."""


def _number(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def parse_resolv_conf(text: str) -> ResolvConf:
    """``nameserver`` lines accumulate; the last ``search`` or ``domain`` line wins; ``options`` accumulate."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    values = dict(DEFAULTS)
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        keyword, args = fields[0], fields[1:]
        if keyword == "nameserver" and args:
            nameservers.append(args[0])
        elif keyword == "search":
            search = [s.rstrip(".") for s in args if s.rstrip(".")]
        elif keyword == "domain" and args:
            search = [args[0].rstrip(".")]
        elif keyword == "options":
            options += args
            for option in args:
                name, _, value = option.partition(":")
                if name in values and value:
                    values[name] = _number(value, values[name])
    return ResolvConf(
        tuple(nameservers), tuple(search), values["ndots"], values["timeout"], values["attempts"], tuple(options)
    )


def _effective(conf: ResolvConf, flavour: Flavour) -> ResolvConf:
    """The values each resolver actually uses after its caps."""
    ndots = min(max(conf.ndots, 0), MAX_NDOTS)
    timeout, attempts = max(conf.timeout, 1), max(conf.attempts, 1)
    if flavour == "glibc":
        timeout, attempts = min(timeout, GLIBC_MAX_TIMEOUT), min(attempts, GLIBC_MAX_ATTEMPTS)
    servers = conf.nameservers[:MAX_NAMESERVERS] or ("127.0.0.1",)
    return ResolvConf(servers, conf.search, ndots, timeout, attempts, conf.options)


def candidate_names(conf: ResolvConf, name: str) -> list[str]:
    """Every absolute name in the order both resolvers build it (Go ``nameList``; glibc the same order)."""
    if name.endswith("."):
        return [name]
    conf = _effective(conf, "go")
    suffixed = [f"{name}.{suffix}." for suffix in conf.search]
    if name.count(".") >= conf.ndots:
        return [f"{name}.", *suffixed]
    return [*suffixed, f"{name}."]


def names_tried(
    conf: ResolvConf, name: str, flavour: Flavour, outcome: Outcome | Callable[[str], Outcome] = "timeout"
) -> list[str]:
    """The names a resolver asks, in order, for ``name`` when each query ends as ``outcome`` says (one outcome
    for every name, or a function of the absolute name). Go walks the whole list until an answer; glibc stops
    the search list at a timeout (NXDOMAIN, NODATA and SERVFAIL go on) and then asks the bare name if it has
    not yet."""
    outcome_of = outcome if callable(outcome) else (lambda _name: outcome)
    candidates = candidate_names(conf, name)
    if flavour == "go" or len(candidates) == 1:
        tried = []
        for candidate in candidates:
            tried.append(candidate)
            if outcome_of(candidate) == "answer":
                break
        return tried
    bare = f"{name}."
    tried = []
    as_is_first = candidates[0] == bare
    if as_is_first:
        tried.append(bare)
        if outcome_of(bare) == "answer":
            return tried
    for candidate in candidates[1:] if as_is_first else candidates[:-1]:
        tried.append(candidate)
        result = outcome_of(candidate)
        if result == "answer":
            return tried
        if result == "timeout":
            break
    if not as_is_first:
        tried.append(bare)
    return tried


def seconds_per_name(conf: ResolvConf, flavour: Flavour) -> float:
    """How long one name takes to time out on every nameserver and attempt (A and AAAA run in parallel)."""
    conf = _effective(conf, flavour)
    count = len(conf.nameservers)
    if flavour == "go":
        return float(conf.attempts * count * conf.timeout)
    waits = [conf.timeout if i == 0 else max(1, (conf.timeout << i) // count) for i in range(count)]
    return float(conf.attempts * sum(waits))


def lookup_seconds(
    conf: ResolvConf, name: str, flavour: Flavour, outcome: Outcome | Callable[[str], Outcome] = "timeout"
) -> float:
    """How long a lookup of ``name`` spends waiting: every name it asks that gets no answer costs
    :func:`seconds_per_name` (answers and NXDOMAIN cost a round trip, counted as 0)."""
    outcome_of = outcome if callable(outcome) else (lambda _name: outcome)
    waiting = [n for n in names_tried(conf, name, flavour, outcome_of) if outcome_of(n) == "timeout"]
    return len(waiting) * seconds_per_name(conf, flavour)


def give_up_seconds(conf: ResolvConf, name: str, flavour: Flavour) -> float:
    """How long a lookup of ``name`` takes to fail when DNS packets are silently dropped (the error nats-server
    logs as ``lookup ... i/o timeout`` appears after this)."""
    return lookup_seconds(conf, name, flavour, "timeout")


def stale_seconds(profile: DnsProfile, qname: str, zone: str = "cluster.local") -> int:
    """How long after a change cluster DNS may still answer ``qname`` the old way (positive or negative): the
    time a CoreDNS replica keeps the entry, 0 when it does not cache it. Entries live ``clamp(record TTL,
    5, cache cap)`` seconds; cluster answers and their SOA carry the profile's ``ttl``; a forwarded NXDOMAIN
    carries the root's 86400 s."""
    if profile.cache is None or not is_cached(profile, qname, zone):
        return 0
    name, zone = qname.rstrip(".").lower(), zone.rstrip(".").lower()
    in_zone = name == zone or name.endswith("." + zone) or name.endswith(".arpa")
    record_ttl = profile.ttl if in_zone else 86400
    return max(profile.cache.min_ttl, min(record_ttl, profile.cache.max_ttl))


def change_visible_within(
    profile: DnsProfile, qnames: Sequence[str], controller_seconds: float, zone: str = "cluster.local"
) -> float:
    """A bound for waiting until DNS reflects an object change: the controllers' lag (EndpointSlice, informer)
    plus the longest time any of ``qnames`` can be answered from a cache."""
    return controller_seconds + max((stale_seconds(profile, q, zone) for q in qnames), default=0)
