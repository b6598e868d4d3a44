"""Usage probe that asks Prometheus (``/api/v1/query``, instant queries) about each key id.

The defaults assume a counter of authenticated requests labelled by key id,
e.g. ``api_requests_total{key_id="k7Hq2", client="10.0.0.7", result="ok"}``;
``metric``, ``key_label``, ``client_label`` and ``rejected_matcher`` adapt
them, and each query can be replaced whole. Placeholders, replaced in one
pass (values are not searched for placeholders again):

| placeholder           | value                                                      |
|-----------------------|------------------------------------------------------------|
| ``{key_id}``          | the key id, escaped for a PromQL string                    |
| ``{selector}``        | ``{metric}{{key_label}="{key_id}"}``                       |
| ``{rejected_selector}`` | the selector plus ``rejected_matcher``                   |
| ``{window}``          | ``now - since``, e.g. ``900s`` (at least ``{step}``)      |
| ``{step}``            | the ``step`` setting (default ``60s``)                     |
| ``{range}``           | twice ``{step}``                                           |
| ``{metric}``, ``{client_label}`` | the settings                                    |

Default queries, evaluated at ``time = now``:

- ``query`` (last seen): the latest point of a ``{step}`` grid over the window
  at which the counter had grown within the preceding ``{range}``, or a new
  series had appeared::

      max(max_over_time(timestamp((increase({selector}[{range}]) > 0)
        or ({selector} > 0 unless {selector} offset {range}))[{window}:{step}]))

  It is accurate to about ``{range}`` and errs late (never early), provided
  ``step`` is at least the scrape interval.
- ``count_query``: uses in the window; a series that appeared in the window
  counts its whole value (``increase`` would miss its first sample)::

      sum(({selector} unless {selector} offset {window}) or increase({selector}[{window}]))

- ``rejected_query``: the same over ``{rejected_selector}`` (default matcher
  ``result!="ok"``); ``rejected_matcher = ""`` turns it off.
- ``clients_query``: one series per client that used the key in the window::

      count by ({client_label}) (({selector} > 0 unless {selector} offset {window})
        or (increase({selector}[{window}]) > 0))

- ``coverage_query``: the first grid point in the window at which the metric
  existed at all. A key that was not seen is NOT_SEEN only when this is
  within one step of ``since``; otherwise (Prometheus started, or the metric
  appeared, after ``since``; or the metric name is wrong) it is UNKNOWN::

      min_over_time(timestamp(count({metric}))[{window}:{step}])

  ``coverage_query = ""`` skips the check (every unseen key is NOT_SEEN).

A use is SEEN when the last-seen query returns a time (clamped into
``[since, now]``) or the count is positive (then, with no time, ``now``: the
worst case). Counts are rounded (``increase`` extrapolates). An unreachable
server, an HTTP error or a failed query raises ProbeError.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self

from ..durations import parse_duration
from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus
from ..registry import AdapterContext, check_settings
from .http import (
    Auth,
    auth_settings,
    check_template,
    check_url,
    fill,
    redact,
    request_json,
    timeout_setting,
)

MAX_CLIENTS = 10
LAST_SEEN = (
    "max(max_over_time(timestamp((increase({selector}[{range}]) > 0)"
    " or ({selector} > 0 unless {selector} offset {range}))[{window}:{step}]))"
)
COUNT = "sum(({selector} unless {selector} offset {window}) or increase({selector}[{window}]))"
REJECTED = COUNT.replace("{selector}", "{rejected_selector}")
CLIENTS = (
    "count by ({client_label}) (({selector} > 0 unless {selector} offset {window})"
    " or (increase({selector}[{window}]) > 0))"
)
COVERAGE = "min_over_time(timestamp(count({metric}))[{window}:{step}])"
FIELDS = frozenset(
    {"key_id", "selector", "rejected_selector", "window", "step", "range", "metric", "client_label"}
)
LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
METRIC = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class PrometheusProbe:
    """Asks Prometheus about each key id; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        metric: str = "api_requests_total",
        key_label: str = "key_id",
        client_label: str = "client",
        rejected_matcher: str = 'result!="ok"',
        step: float = 60.0,
        query: str = LAST_SEEN,
        count_query: str = COUNT,
        clients_query: str | None = CLIENTS,
        rejected_query: str | None = REJECTED,
        coverage_query: str | None = COVERAGE,
        header: str = "Authorization",
        scheme: str | None = None,
        token_env: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Raises ValueError for a template with an unknown placeholder."""
        self.url = url.rstrip("/") + "/api/v1/query"
        self.metric, self.key_label, self.client_label = metric, key_label, client_label
        self.rejected_matcher = rejected_matcher
        self.step = max(0.001, step)  # seconds; sub-second steps suit tests with fast scrapes
        self.queries = {
            "last_seen": query,
            "count": count_query,
            "clients": clients_query if client_label else None,
            "rejected": rejected_query if rejected_matcher else None,
            "coverage": coverage_query,
        }
        for template in self.queries.values():
            if template:
                check_template(template, FIELDS)
        self.auth = Auth(header, scheme, token_env, env or {})
        self.timeout = timeout

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``url`` (required: the server, e.g. http://prometheus:9090),
        ``metric``, ``key_label``, ``client_label``, ``rejected_matcher``, ``step``,
        ``query``, ``count_query``, ``clients_query``, ``rejected_query``,
        ``coverage_query``, ``header``, ``scheme``, ``token_env``, ``timeout``.
        ConfigError names the offending key."""
        names = ("query", "count_query", "clients_query", "rejected_query", "coverage_query")
        check_settings(
            settings,
            ctx,
            {
                "url": str,
                "metric": str,
                "key_label": str,
                "client_label": str,
                "rejected_matcher": str,
                "step": str,
                **dict.fromkeys(names, str),
                "header": str,
                "scheme": str,
                "token_env": str,
                "timeout": str,
            },
        )
        url = settings.get("url")
        if not url:
            raise ctx.error("url", "required: the Prometheus server, e.g. http://127.0.0.1:9090")
        try:
            check_url(url)
        except ValueError as exc:
            raise ctx.error("url", str(exc)) from None
        if "{" in url:
            raise ctx.error("url", "the server URL takes no placeholders")
        metric = settings.get("metric", "api_requests_total")
        if not METRIC.fullmatch(metric):
            raise ctx.error("metric", f"not a metric name: {metric!r}")
        for key, default in (("key_label", "key_id"), ("client_label", "client")):
            value = settings.get(key, default)
            if not LABEL.fullmatch(value) and not (key == "client_label" and value == ""):
                raise ctx.error(key, f"not a label name: {value!r}")
        try:
            step = parse_duration(settings.get("step", "1m")).total_seconds()
        except ValueError as exc:
            raise ctx.error("step", str(exc)) from None
        if step < 1:
            raise ctx.error("step", "must be at least 1s")
        templates: dict[str, Any] = {}
        for key in names:
            if key in settings:
                if key in ("query", "count_query") and not settings[key]:
                    raise ctx.error(key, "must not be empty")
                try:
                    check_template(settings[key], FIELDS)
                except ValueError as exc:
                    raise ctx.error(key, str(exc)) from None
                templates[key] = settings[key] or None
        return cls(
            url,
            metric=metric,
            key_label=settings.get("key_label", "key_id"),
            client_label=settings.get("client_label", "client"),
            rejected_matcher=settings.get("rejected_matcher", 'result!="ok"'),
            step=step,
            timeout=timeout_setting(settings, ctx),
            **templates,
            **auth_settings(settings, ctx),
        )

    def check_access(self) -> list[str]:
        """Problems ``rotatectl check`` should report (a missing token variable)."""
        return self.auth.problems()

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """Each key id's use within [since, now]; every id gets an answer.

        Raises ProbeError when Prometheus cannot be asked or a query fails.
        """
        if not key_ids:
            return {}
        since, now = _utc(since), _utc(now)
        t0, t1 = since.timestamp(), now.timestamp()
        base = {
            "window": _duration(max(self.step, t1 - t0)),
            "step": _duration(self.step),
            "range": _duration(2 * self.step),
            "metric": self.metric,
            "client_label": self.client_label,
        }
        gap = self._coverage_gap(base, t0, t1)
        result: dict[str, KeyUsage] = {}
        for key_id in dict.fromkeys(key_ids):
            values = {**base, **self._selectors(key_id)}
            last = _largest(self._query("last_seen", values, t1))
            count = _total(self._query("count", values, t1))
            if last is None and count < 0.5:
                status = UsageStatus.UNKNOWN if gap else UsageStatus.NOT_SEEN
                result[key_id] = KeyUsage(status=status, detail=gap)
                continue
            notes = []
            if last is None:
                last = t1
                notes.append("count without a last-seen time: taken as now")
            seen = max(1, round(count))
            rejected = 0
            if self.queries["rejected"]:
                rejected = min(seen, round(_total(self._query("rejected", values, t1))))
            clients: list[str] = []
            if self.queries["clients"]:
                clients = sorted(
                    {
                        name
                        for labels, _ in self._query("clients", values, t1)
                        if (name := labels.get(self.client_label))
                    }
                )
                if len(clients) > MAX_CLIENTS:
                    notes.append(f"more than {MAX_CLIENTS} clients")
            result[key_id] = KeyUsage(
                status=UsageStatus.SEEN,
                last_seen=datetime.fromtimestamp(min(max(last, t0), t1), UTC),
                count=seen,
                clients=tuple(clients[:MAX_CLIENTS]),
                rejected=rejected,
                detail="; ".join(notes),
            )
        return result

    def _selectors(self, key_id: str) -> dict[str, str]:
        matcher = f'{self.key_label}="{_promql_string(key_id)}"'
        rejected = f"{matcher},{self.rejected_matcher}" if self.rejected_matcher else matcher
        return {
            "key_id": _promql_string(key_id),
            "selector": f"{self.metric}{{{matcher}}}",
            "rejected_selector": f"{self.metric}{{{rejected}}}",
        }

    def _coverage_gap(self, base: Mapping[str, str], t0: float, t1: float) -> str:
        """Why an unseen key is UNKNOWN, or "" when Prometheus covers the window."""
        if not self.queries["coverage"]:
            return ""
        first = _smallest(self._query("coverage", base, t1))
        if first is None:
            return f"no series of {self.metric} in the window: is the metric (or query) right?"
        if first > t0 + self.step + 1:  # the grid's first point is a step after since at most
            start = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return f"Prometheus has {self.metric} only from {start}, after the window start"
        return ""

    def _query(
        self, name: str, values: Mapping[str, str], at: float
    ) -> list[tuple[dict[str, str], float]]:
        """Run one query at ``at``: [(labels, value)] without NaN/Inf samples."""
        template = self.queries[name]
        assert template is not None
        promql = fill(template, values, quote=False)
        form = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"}).encode()
        _, body = request_json(
            self.url, self.auth.headers(), self.timeout, "prometheus probe", form, explain=True
        )
        where = redact(self.url)
        if body is None:
            raise ProbeError(f"prometheus probe: {where} answered 404: is the url the server?")
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise ProbeError(f"prometheus probe: {name} query failed: {error or 'no success'}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProbeError(f"prometheus probe: {where}: unexpected answer (no data)")
        kind, found = data.get("resultType"), data.get("result")
        samples: list[tuple[dict[str, str], Any]]
        if kind == "vector" and isinstance(found, list):
            samples = [
                (item.get("metric") or {}, (item.get("value") or [None, None])[1])
                for item in found
                if isinstance(item, dict)
            ]
        elif kind == "scalar" and isinstance(found, list) and len(found) == 2:
            samples = [({}, found[1])]
        else:
            raise ProbeError(
                f"prometheus probe: the {name} query must give an instant vector or a scalar,"
                f" not {kind}"
            )
        parsed: list[tuple[dict[str, str], float]] = []
        for labels, raw in samples:
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ProbeError(f"prometheus probe: {name} query: not a number: {raw!r}") from None
            if math.isfinite(number):
                parsed.append((labels, number))
        return parsed


def _duration(seconds: float) -> str:
    """A PromQL duration, whole milliseconds rounded up (``900s``, ``1500ms``)."""
    ms = math.ceil(round(seconds * 1000, 3))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _promql_string(value: str) -> str:
    """``value`` for the inside of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _largest(samples: list[tuple[dict[str, str], float]]) -> float | None:
    return max((v for _, v in samples), default=None)


def _smallest(samples: list[tuple[dict[str, str], float]]) -> float | None:
    return min((v for _, v in samples), default=None)


def _total(samples: list[tuple[dict[str, str], float]]) -> float:
    return sum(v for _, v in samples)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
