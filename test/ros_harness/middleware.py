"""The in-process "middleware" under the binding stand-in: topics, QoS matching, services and the graph.

Models what an rmw implementation does for endpoints in one process:

- a publisher delivers a copy (the CDR bytes) to every *matched* subscription of the same domain, fully
  qualified topic name and type; matching follows ``rmw_qos_profile_check_compatible`` (a best-effort
  publisher does not match a reliable subscription, a volatile publisher does not match a
  transient-local subscription, deadline / liveliness / lease duration checks);
- KEEP_LAST depth on the subscription queue (oldest dropped), KEEP_ALL unbounded;
- TRANSIENT_LOCAL publishers keep their last ``depth`` messages and replay them to transient-local
  subscriptions that match later (late joiners);
- ``BEST_AVAILABLE`` policies are resolved against the endpoints present at creation, as
  rmw_dds_common does;
- matched and requested/offered-incompatible-QoS events;
- services and clients matched by name and type, requests and responses routed by client and sequence;
- the graph (nodes, endpoints, their QoS) for the ``rcl_get_*`` queries.

Every change notifies one condition variable on which the wait sets sleep.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import itertools
import threading
import time
from typing import Any

# rmw enum values (rmw/types.h)
HISTORY_SYSTEM_DEFAULT, KEEP_LAST, KEEP_ALL, HISTORY_UNKNOWN = 0, 1, 2, 3
RELIABLE, BEST_EFFORT, RELIABILITY_BEST_AVAILABLE = 1, 2, 4
TRANSIENT_LOCAL, VOLATILE, DURABILITY_BEST_AVAILABLE = 1, 2, 4
AUTOMATIC, MANUAL_BY_TOPIC, LIVELINESS_BEST_AVAILABLE = 1, 3, 5
POLICY_DURABILITY, POLICY_DEADLINE, POLICY_LIVELINESS, POLICY_RELIABILITY = 1 << 1, 1 << 2, 1 << 3, 1 << 4
POLICY_LEASE = 1 << 8
DURATION_UNSPECIFIED = 0
DURATION_INFINITE = 9223372036854775807
DURATION_BEST_AVAILABLE = 9223372036854775806


@dataclass
class QoS:
    """``rmw_qos_profile_t`` with durations in nanoseconds."""

    history: int = KEEP_LAST
    depth: int = 10
    reliability: int = RELIABLE
    durability: int = VOLATILE
    lifespan: int = 0
    deadline: int = 0
    liveliness: int = 0
    liveliness_lease_duration: int = 0
    avoid_ros_namespace_conventions: bool = False

    @property
    def queue_depth(self) -> int | None:
        """Messages kept per queue (None: unbounded); depth 0 or system default history keep one."""
        if self.history == KEEP_ALL:
            return None
        return max(int(self.depth), 1)


def _infinite(ns: int) -> bool:
    return ns in (DURATION_UNSPECIFIED, DURATION_INFINITE)


def check_compatible(pub: QoS, sub: QoS) -> tuple[int, str, int]:
    """``rmw_qos_profile_check_compatible``: (0 OK / 1 WARNING / 2 ERROR, reason, first policy kind)."""
    if pub.reliability == BEST_EFFORT and sub.reliability == RELIABLE:
        return 2, 'ERROR: Best effort publisher and reliable subscription;', POLICY_RELIABILITY
    if pub.durability == VOLATILE and sub.durability == TRANSIENT_LOCAL:
        return 2, 'ERROR: Volatile publisher and transient local subscription;', POLICY_DURABILITY
    if not _infinite(sub.deadline) and (_infinite(pub.deadline) or pub.deadline > sub.deadline):
        return 2, 'ERROR: Subscription deadline is less than publisher deadline;', POLICY_DEADLINE
    if pub.liveliness == AUTOMATIC and sub.liveliness == MANUAL_BY_TOPIC:
        return 2, 'ERROR: Publisher liveliness is automatic and subscription is manual by topic;', \
            POLICY_LIVELINESS
    if not _infinite(sub.liveliness_lease_duration) and (
            _infinite(pub.liveliness_lease_duration)
            or pub.liveliness_lease_duration > sub.liveliness_lease_duration):
        return 2, ('ERROR: Subscription liveliness lease duration is less than publisher;'), POLICY_LEASE
    sides = (('Publisher', pub), ('Subscription', sub))
    warnings = [f'WARNING: {side} {name} is {value};' for side, q in sides
                for name, value in (('reliability', q.reliability), ('durability', q.durability))
                if value in (0, 3)]
    return (1, ' '.join(warnings), 0) if warnings else (0, '', 0)


class EventState:
    """Pending status of one event handle (``rmw_*_status_t`` counters)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.total_count = 0
        self.total_count_change = 0
        self.current_count = 0
        self.current_count_change = 0
        self.last_policy_kind = 0
        self.pending = False

    def record(self, *, current_delta: int = 0, policy: int = 0) -> None:
        self.total_count += 1 if current_delta >= 0 else 0
        self.total_count_change += 1 if current_delta >= 0 else 0
        self.current_count += current_delta
        self.current_count_change += current_delta
        self.last_policy_kind = policy or self.last_policy_kind
        self.pending = True

    def take(self) -> dict[str, int] | None:
        if not self.pending:
            return None
        out = dict(total_count=self.total_count, total_count_change=self.total_count_change,
                   current_count=self.current_count, current_count_change=self.current_count_change,
                   last_policy_kind=self.last_policy_kind)
        self.total_count_change = self.current_count_change = 0
        self.pending = False
        return out


_gids = itertools.count(1)


@dataclass(eq=False)
class Endpoint:
    """A publisher, subscription, service or client registered in the graph."""

    kind: str                   # 'publisher', 'subscription', 'service', 'client'
    node: Any                   # the binding's Node
    name: str                   # fully qualified topic or service name
    type_name: str              # pkg/msg/Name or pkg/srv/Name
    qos: QoS
    gid: int = field(default_factory=lambda: next(_gids))
    queue: deque = field(default_factory=deque)
    history: deque = field(default_factory=deque)          # transient-local publishers
    matched: set = field(default_factory=set)
    events: dict = field(default_factory=dict)              # event kind -> EventState
    sequence: int = 0
    alive: bool = True

    def __post_init__(self) -> None:
        # rmw counts statuses from the entity's creation on; an rcl event created later reads them
        kinds = {'publisher': ('matched', 'offered_incompatible_qos', 'deadline', 'liveliness'),
                 'subscription': ('matched', 'requested_incompatible_qos', 'deadline', 'liveliness',
                                  'message_lost')}.get(self.kind, ())
        self.events = {k: EventState(k) for k in kinds}


class Domain:
    """All endpoints of one ROS domain id."""

    def __init__(self, middleware: 'Middleware', domain_id: int) -> None:
        self.middleware = middleware
        self.domain_id = domain_id
        self.nodes: list[Any] = []
        self.endpoints: list[Endpoint] = []

    # -- registration -----------------------------------------------------------------------------
    def add(self, endpoint: Endpoint) -> Endpoint:
        with self.middleware.cv:
            self._resolve_best_available(endpoint)
            self.endpoints.append(endpoint)
            if endpoint.kind in ('publisher', 'subscription'):
                other = 'subscription' if endpoint.kind == 'publisher' else 'publisher'
                for peer in self._peers(endpoint.name, other):
                    if peer.type_name != endpoint.type_name:
                        continue
                    pub, sub = (endpoint, peer) if endpoint.kind == 'publisher' else (peer, endpoint)
                    self._match(pub, sub)
            self.middleware.cv.notify_all()
        return endpoint

    def remove(self, endpoint: Endpoint) -> None:
        with self.middleware.cv:
            if endpoint in self.endpoints:
                self.endpoints.remove(endpoint)
            endpoint.alive = False
            for peer in list(endpoint.matched):
                peer.matched.discard(endpoint)
                if 'matched' in peer.events:
                    peer.events['matched'].record(current_delta=-1)
            endpoint.matched.clear()
            endpoint.queue.clear()
            self.middleware.cv.notify_all()

    def _peers(self, name: str, kind: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.kind == kind and e.name == name and e.alive]

    def _resolve_best_available(self, endpoint: Endpoint) -> None:
        qos = endpoint.qos
        if endpoint.kind == 'publisher':
            if qos.reliability == RELIABILITY_BEST_AVAILABLE:
                qos.reliability = RELIABLE
            if qos.durability == DURABILITY_BEST_AVAILABLE:
                qos.durability = TRANSIENT_LOCAL
        elif endpoint.kind == 'subscription':
            pubs = self._peers(endpoint.name, 'publisher')
            if qos.reliability == RELIABILITY_BEST_AVAILABLE:
                reliable = all(p.qos.reliability == RELIABLE for p in pubs)
                qos.reliability = RELIABLE if reliable else BEST_EFFORT
            if qos.durability == DURABILITY_BEST_AVAILABLE:
                qos.durability = (TRANSIENT_LOCAL if all(p.qos.durability == TRANSIENT_LOCAL for p in pubs)
                                  else VOLATILE)
        if qos.liveliness == LIVELINESS_BEST_AVAILABLE:
            qos.liveliness = AUTOMATIC
        for name in ('deadline', 'liveliness_lease_duration'):
            if getattr(qos, name) == DURATION_BEST_AVAILABLE:
                setattr(qos, name, DURATION_UNSPECIFIED)

    def _match(self, pub: Endpoint, sub: Endpoint) -> None:
        level, _, policy = check_compatible(pub.qos, sub.qos)
        if level == 2:
            for endpoint, kind in ((pub, 'offered_incompatible_qos'), (sub, 'requested_incompatible_qos')):
                if kind in endpoint.events:
                    endpoint.events[kind].record(policy=policy)
            return
        pub.matched.add(sub)
        sub.matched.add(pub)
        for endpoint in (pub, sub):
            if 'matched' in endpoint.events:
                endpoint.events['matched'].record(current_delta=1)
        if sub.qos.durability == TRANSIENT_LOCAL and pub.qos.durability == TRANSIENT_LOCAL:
            for item in pub.history:
                self._enqueue(sub, item)

    # -- data -------------------------------------------------------------------------------------
    def publish(self, pub: Endpoint, data: bytes) -> None:
        """Deliver serialized data to every matched subscription (and keep it for late joiners)."""
        with self.middleware.cv:
            pub.sequence += 1
            item = (data, {'source_timestamp': time.time_ns(), 'publication_sequence_number': pub.sequence})
            if pub.qos.durability == TRANSIENT_LOCAL:
                pub.history.append(item)
                depth = pub.qos.queue_depth
                while depth is not None and len(pub.history) > depth:
                    pub.history.popleft()
            for sub in list(pub.matched):
                self._enqueue(sub, item)
            self.middleware.cv.notify_all()

    def _enqueue(self, sub: Endpoint, item: tuple) -> None:
        data, info = item
        sub.sequence += 1
        sub.queue.append((data, dict(info, received_timestamp=time.time_ns(),
                                     reception_sequence_number=sub.sequence)))
        depth = sub.qos.queue_depth
        while depth is not None and len(sub.queue) > depth:
            sub.queue.popleft()

    def take(self, endpoint: Endpoint) -> Any:
        with self.middleware.cv:
            return endpoint.queue.popleft() if endpoint.queue else None

    # -- services ---------------------------------------------------------------------------------
    def send_request(self, client: Endpoint, data: bytes) -> int:
        with self.middleware.cv:
            client.sequence += 1
            for service in self._peers(client.name, 'service'):
                if service.type_name == client.type_name:
                    service.queue.append((data, client, client.sequence, time.time_ns()))
            self.middleware.cv.notify_all()
            return client.sequence

    def send_response(self, client: Endpoint, sequence: int, data: bytes) -> None:
        with self.middleware.cv:
            if client.alive:
                client.queue.append((data, sequence, time.time_ns()))
            self.middleware.cv.notify_all()

    def service_available(self, client: Endpoint) -> bool:
        with self.middleware.cv:
            return any(s.type_name == client.type_name for s in self._peers(client.name, 'service'))

    # -- graph --------------------------------------------------------------------------------------
    def names_and_types(self, kinds: tuple[str, ...], node: Any = None) -> list[tuple[str, list[str]]]:
        with self.middleware.cv:
            found: dict[str, set[str]] = {}
            for e in self.endpoints:
                if e.kind in kinds and (node is None or e.node is node):
                    found.setdefault(e.name, set()).add(e.type_name)
        return [(name, sorted(types)) for name, types in sorted(found.items())]

    def count(self, kind: str, name: str) -> int:
        with self.middleware.cv:
            return len(self._peers(name, kind))

    def endpoints_on(self, kind: str, name: str) -> list[Endpoint]:
        with self.middleware.cv:
            return list(self._peers(name, kind))


class Middleware:
    """Process-wide: the domains and the one condition variable every wait set sleeps on."""

    def __init__(self) -> None:
        self.cv = threading.Condition(threading.RLock())
        self.domains: dict[int, Domain] = {}

    def domain(self, domain_id: int) -> Domain:
        with self.cv:
            if domain_id not in self.domains:
                self.domains[domain_id] = Domain(self, domain_id)
            return self.domains[domain_id]

    def notify(self) -> None:
        with self.cv:
            self.cv.notify_all()
