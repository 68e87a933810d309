"""Per-process settings from zope.conf::

    <product-config zasync>
        database            zasync_queues  # multi-database mode: the queues' database
        threads             3         # worker threads of this process's dispatcher
        poll-interval       1.0       # seconds between polls when idle
        public-url          https://www.example.org
        default-quota-size  1         # the 'default' quota's size when it is created
        dispatcher          on        # force the dispatcher on or off
        queues              default   # queues served, space-separated names
        ping-interval       30        # seconds between heartbeats
        death-interval      300       # heartbeat age at which peers recover its jobs
        group-commit        8         # short jobs of a thread per commit (1: alone)
        metrics-token       s3cr3t... # lets Prometheus scrape @@zasync-metrics
    </product-config>

Every key is optional. ``threads`` given here (or by ``zasync worker
--agent-size``) wins over the agent sizes set for the whole cluster in the
database (``zasync agents set``, the zasync control panel), which apply
to processes that do not set it; ``zasync settings`` shows each
dispatcher's size and where it comes from. ``default-quota-size`` is the
size the 'default' quota gets when it is created; after that its size in
the database is in force (``zasync quota set default N``, the control
panel). The public URL of a site in its registry (``zasync.public_url``)
wins over ``public-url``. ``metrics-token`` (or the environment variable
ZASYNC_METRICS_TOKEN, which wins) lets a Prometheus server scrape
``@@zasync-metrics`` with ``Authorization: Bearer <token>`` and no Plone
login (see :func:`metrics_token`).

The dispatcher's options and their defaults are zasync.config's
(DispatcherConfig), which also checks them: ProcessConfig only reads them
from zope.conf.
"""

import dataclasses
import os

from zasync.config import (
    DEFAULTS,
    INTERVALS,
    ConfigurationError,
    DispatcherConfig,
    queue_name,
)

SECTION = "zasync"
DISPATCHER_ENVIRONMENT = "ZASYNC_DISPATCHER"
METRICS_TOKEN_ENVIRONMENT = "ZASYNC_METRICS_TOKEN"
#: The shortest metrics token accepted: a guessable one would open the
#: metrics to anyone.
METRICS_TOKEN_MIN_LENGTH = 16

#: How <product-config zasync> spells the dispatcher's options.
PRODUCT_CONFIG = {
    "agent_size": "threads",
    "poll_interval": "poll-interval",
    "queues": "queues",
    "ping_interval": "ping-interval",
    "death_interval": "death-interval",
    "group_commit": "group-commit",
    "database": "database",
}


#: Where a value of ProcessConfig came from.
FROM_ZOPE_CONF = "zope.conf"
FROM_COMMAND_LINE = "command line"


@dataclasses.dataclass(frozen=True)
class ProcessConfig:
    database: str = "zasync_queues"
    #: None: not set, the dispatcher follows the cluster's agent settings.
    threads: int | None = DEFAULTS.agent_size
    poll_interval: float = DEFAULTS.poll_interval
    public_url: str | None = None
    default_quota_size: int | None = None
    dispatcher: bool | None = None
    queues: tuple = DEFAULTS.queues
    ping_interval: float = float(DEFAULTS.ping_interval)
    death_interval: float = float(DEFAULTS.death_interval)
    group_commit: int = DEFAULTS.group_commit
    #: Where ``threads`` came from (FROM_ZOPE_CONF, FROM_COMMAND_LINE), or
    #: None when it is not set.
    threads_from: str | None = None
    #: ((interval, where it came from), ...) of the intervals this process
    #: sets; the others follow the cluster-wide settings.
    interval_sources: tuple = ()
    #: Whether start-up checks that this process keeps the queues where the
    #: cluster does (see startup.check_queues_location). Only a command line
    #: turns it off (``zasync mode``, which changes the record).
    check_location: bool = True

    def dispatcher_config(self, **more):
        """The DispatcherConfig of this process's dispatcher (``more``: the
        options zope.conf does not give, such as ``uuid``, ``database``);
        ConfigurationError names the product-config key to fix."""
        return DispatcherConfig(
            agent_size=self.threads,
            agent_size_source=self.threads_from,
            poll_interval=self.poll_interval,
            queues=self.queues,
            ping_interval=self.ping_interval,
            death_interval=self.death_interval,
            group_commit=self.group_commit,
            interval_sources=self.interval_sources,
            names=PRODUCT_CONFIG,
            where=f"<product-config {SECTION}>",
            **more,
        )


# Values a command line sets for this process (``zasync worker
# --zope-conf``); they win over zope.conf.
_overrides = {}


def set_overrides(**values):
    """Make this process use ``values`` (ProcessConfig field names) whatever
    zope.conf says; None leaves a field to zope.conf."""
    fields = {f.name for f in dataclasses.fields(ProcessConfig)}
    unknown = set(values) - fields
    if unknown:
        raise TypeError(f"unknown ProcessConfig fields: {sorted(unknown)}")
    _overrides.clear()
    _overrides.update({k: v for k, v in values.items() if v is not None})


def product_config_sections():
    """zope.conf's <product-config> sections, by name."""
    try:
        from App.config import getConfiguration
    except ImportError:  # pragma: no cover - Zope is a dependency of the extra
        return {}
    return getattr(getConfiguration(), "product_config", None) or {}


def _raw_section():
    return dict(product_config_sections().get(SECTION) or {})


def _number(raw, key, kind, minimum):
    text = raw[key]
    try:
        value = kind(text)
    except ValueError:
        raise ConfigurationError(
            f"<product-config {SECTION}> {key} must be a number, not {text!r}"
        ) from None
    if value < minimum:
        raise ConfigurationError(
            f"<product-config {SECTION}> {key} must be at least {minimum}, not {text!r}"
        )
    return value


def _switch(raw, key, where=None):
    text = str(raw[key]).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    where = where or f"<product-config {SECTION}> {key}"
    raise ConfigurationError(f"{where} must be on or off, not {raw[key]!r}")


KNOWN = {
    "database",
    "threads",
    "poll-interval",
    "public-url",
    "default-quota-size",
    "dispatcher",
    "queues",
    "ping-interval",
    "death-interval",
    "group-commit",
    "metrics-token",
}


def metrics_token(raw=None):
    """The bearer token that lets a scraper read ``@@zasync-metrics``
    without a Plone login, or None (then only users with the permission
    'zasync: View metrics' may). The environment variable
    ZASYNC_METRICS_TOKEN wins over ``<product-config zasync>
    metrics-token`` (or ``raw``); an empty one is none. Read at each call,
    never kept in a ProcessConfig (whose repr may be logged).
    ConfigurationError if it is shorter than METRICS_TOKEN_MIN_LENGTH."""
    raw = _raw_section() if raw is None else dict(raw)
    token = os.environ.get(METRICS_TOKEN_ENVIRONMENT)
    where = f"the environment variable {METRICS_TOKEN_ENVIRONMENT}"
    if token is None:
        token = raw.get("metrics-token")
        where = f"<product-config {SECTION}> metrics-token"
    token = (token or "").strip()
    if not token:
        return None
    if len(token) < METRICS_TOKEN_MIN_LENGTH:
        raise ConfigurationError(
            f"{where} must be at least {METRICS_TOKEN_MIN_LENGTH} characters "
            f"long, not {len(token)}: use a long random secret, such as the "
            "output of: python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    return token


def process_config(raw=None):
    """This process's ProcessConfig, read from zope.conf (or ``raw``)."""
    raw = _raw_section() if raw is None else dict(raw)
    unknown = sorted(set(raw) - KNOWN)
    if unknown:
        raise ConfigurationError(
            f"<product-config {SECTION}> has unknown keys {', '.join(unknown)}; "
            f"known are {', '.join(sorted(KNOWN))}"
        )
    values = {}
    if raw.get("database"):
        values["database"] = raw["database"].strip()
    if "threads" in raw:
        values["threads"] = _number(raw, "threads", int, 1)
        values["threads_from"] = FROM_ZOPE_CONF
    if "poll-interval" in raw:
        values["poll_interval"] = _number(raw, "poll-interval", float, 0.001)
    if raw.get("public-url"):
        url = raw["public-url"].strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"<product-config {SECTION}> public-url must start with "
                f"http:// or https://, not {raw['public-url']!r}"
            )
        values["public_url"] = url
    if "default-quota-size" in raw:
        values["default_quota_size"] = _number(raw, "default-quota-size", int, 1)
    if "dispatcher" in raw:
        values["dispatcher"] = _switch(raw, "dispatcher")
    if "queues" in raw:
        names = raw["queues"].split()
        # "default" is the default queue, whose name is the empty string.
        values["queues"] = tuple(queue_name(n) for n in names)
    if "ping-interval" in raw:
        values["ping_interval"] = _number(raw, "ping-interval", float, 0.1)
    if "death-interval" in raw:
        values["death_interval"] = _number(raw, "death-interval", float, 1)
    if "group-commit" in raw:
        values["group_commit"] = _number(raw, "group-commit", int, 1)
    # ZASYNC_DISPATCHER=off keeps scripts (zconsole run, debug sessions)
    # started with a worker's zope.conf from running a second dispatcher.
    switch = os.environ.get(DISPATCHER_ENVIRONMENT)
    if switch:
        values["dispatcher"] = _switch(
            {"env": switch}, "env", f"the environment variable {DISPATCHER_ENVIRONMENT}"
        )
    values.update(_overrides)
    if _overrides.get("threads") is not None:
        values["threads_from"] = FROM_COMMAND_LINE
    sources = {}
    for field in INTERVALS:
        if _overrides.get(field) is not None:
            sources[field] = FROM_COMMAND_LINE
        elif PRODUCT_CONFIG[field] in raw:
            sources[field] = FROM_ZOPE_CONF
    values["interval_sources"] = tuple(sources.items())
    config = ProcessConfig(**values)
    config.dispatcher_config()  # checked now, not when the dispatcher starts
    metrics_token(raw)  # checked now, not at the first scrape
    return config
