"""Safety gates: checks that must pass before a scheduled run takes a lease.

    gates:
      alertmanager: {url: http://alertmanager:9093, matchers: [severity=critical]}
      probes: [...]            # probes with tolerances, as in a steady-state hypothesis
      webhook: {url: https://veto.example/preflight, timeout: 10s}

In order: no firing alert in Alertmanager (its v2 API: active, neither
silenced nor inhibited) matches the matchers; every probe meets its
tolerance; the veto webhook answers 2xx to a POST of the planned run
(Steadybit's preflight). A gate that cannot be asked blocks the run too:
not knowing whether there is an incident is not a green light.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ConfigError
from controller.experiments import fields, probes
from controller.experiments import parse as parser
from controller.experiments.model import Activity

MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')
DEFAULT_TIMEOUT = 10.0
MAX_ANSWER = 2000  # characters of an answer kept as the reason


@dataclass(frozen=True)
class Alertmanager:
    url: str
    matchers: tuple[str, ...]  # in Alertmanager's filter syntax: severity="critical"
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Webhook:
    url: str
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Gates:
    alertmanager: Alertmanager | None = None
    probes: tuple[Activity, ...] = ()
    webhook: Webhook | None = None

    def __bool__(self) -> bool:
        return bool(self.alertmanager or self.probes or self.webhook)

    def merged(self, other: Gates) -> Gates:
        """These and other's: each kind from self if set, probes of both."""
        return Gates(
            self.alertmanager or other.alertmanager,
            (*self.probes, *other.probes),
            self.webhook or other.webhook,
        )


@dataclass(frozen=True)
class Blocked:
    gate: str  # alertmanager, probe, webhook
    answer: str  # what it said, for people

    def __str__(self) -> str:
        return f"gate {self.gate}: {self.answer}"


def _url(raw: Mapping[str, Any], where: str) -> str:
    url = fields.string(raw, "url", where)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{where}.url", f"{url!r} is not an http(s) URL")
    return url.rstrip("/")


def _matcher(text: object, where: str) -> str:
    m = MATCHER.match(str(text)) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(where, f"{text!r} is not a matcher like severity=critical or env=~prod.*")
    name, op, value = m.groups()
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(where, f"{value!r} is not a regular expression: {exc}") from None
    return f'{name}{op}"{value}"'


def parse(raw: object, where: str) -> Gates:
    doc = fields.mapping(raw, where)
    fields.no_unknown(doc, {"alertmanager", "probes", "webhook"}, where)
    am = wh = None
    if doc.get("alertmanager") is not None:
        w = f"{where}.alertmanager"
        a = fields.mapping(doc["alertmanager"], w)
        fields.no_unknown(a, {"url", "matchers", "timeout"}, w)
        url = _url(a, w)
        matchers = a.get("matchers", [])
        if not isinstance(matchers, list) or not matchers:
            raise ConfigError(f"{w}.matchers", "give at least one, e.g. [severity=critical]")
        am = Alertmanager(
            url,
            tuple(_matcher(m, f"{w}.matchers[{i}]") for i, m in enumerate(matchers)),
            fields.duration(a.get("timeout", DEFAULT_TIMEOUT), f"{w}.timeout", allow_zero=False),
        )
    if doc.get("webhook") is not None:
        w = f"{where}.webhook"
        h = fields.mapping(doc["webhook"], w)
        fields.no_unknown(h, {"url", "timeout"}, w)
        timeout = fields.duration(h.get("timeout", DEFAULT_TIMEOUT), f"{w}.timeout", False)
        wh = Webhook(_url(h, w), timeout)
    raw_probes = doc.get("probes", [])
    if not isinstance(raw_probes, list):
        raise ConfigError(f"{where}.probes", "expected a list of probes")
    found = tuple(parser.probe(p, f"{where}.probes[{i}]") for i, p in enumerate(raw_probes))
    for i, p in enumerate(found):
        if p.tolerance is None:
            raise ConfigError(f"{where}.probes[{i}]", "a gate probe needs a tolerance")
    return Gates(am, found, wh)


def _alerts(gate: Alertmanager) -> Blocked | None:
    query = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    query += [("filter", m) for m in gate.matchers]
    url = f"{gate.url}/api/v2/alerts?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=gate.timeout) as resp:
            alerts = json.loads(resp.read(1 << 22))
    except (OSError, ValueError) as exc:
        return Blocked("alertmanager", f"cannot read {gate.url}: {exc}")
    if not isinstance(alerts, list):
        return Blocked("alertmanager", f"{gate.url} answered {str(alerts)[:200]!r}, not a list")
    if alerts:
        names = sorted({str(a.get("labels", {}).get("alertname", "?")) for a in alerts})
        return Blocked(
            "alertmanager",
            f"{len(alerts)} firing alert(s) match {', '.join(gate.matchers)}: {', '.join(names)}",
        )
    return None


def _webhook(gate: Webhook, planned: Mapping[str, Any]) -> Blocked | None:
    req = urllib.request.Request(
        gate.url,
        data=json.dumps(planned).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "brownout-gate"},
    )
    try:
        with urllib.request.urlopen(req, timeout=gate.timeout) as resp:
            resp.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_ANSWER).decode(errors="replace").strip()
        return Blocked("webhook", f"{gate.url} answered HTTP {exc.code}: {body or exc.reason}")
    except TimeoutError:
        return Blocked("webhook", f"{gate.url} did not answer within {gate.timeout:g}s")
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            return Blocked("webhook", f"{gate.url} did not answer within {gate.timeout:g}s")
        return Blocked("webhook", f"cannot reach {gate.url}: {reason}")
    return None


def check(gates: Gates, planned: Mapping[str, Any]) -> Blocked | None:
    """The first gate that blocks the planned run, or None: it may go."""
    if gates.alertmanager is not None and (blocked := _alerts(gates.alertmanager)):
        return blocked
    for probe in gates.probes:
        run = probes.execute(probe)
        if not run.tolerance_met:
            why = run.verdict.detail if run.verdict is not None else run.error
            return Blocked("probe", f"{probe.name}: {why}")
    if gates.webhook is not None and (blocked := _webhook(gates.webhook, planned)):
        return blocked
    return None
