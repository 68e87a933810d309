"""Per-process settings from zope.conf::

    <product-config zasync>
        database            zasync_queues  # multi-database mode: the queues' database
        threads             3         # worker threads of this process's dispatcher
        poll-interval       1.0       # seconds between polls when idle
        public-url          https://www.example.org
        default-quota-size  1
        dispatcher          on        # force the dispatcher on or off
    </product-config>

Every key is optional. Site-wide settings (the default quota size, the
threads, the public URL) can also be changed while running, in the
configuration registry (see IZasyncSettings); the registry wins over
zope.conf for the public URL, and a registry change is applied to the
queue at once.
"""

import dataclasses

SECTION = "zasync"


class ConfigurationError(ValueError):
    """A product-config value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class ProcessConfig:
    database: str = "zasync_queues"
    threads: int = 3
    poll_interval: float = 1.0
    public_url: str | None = None
    default_quota_size: int | None = None
    dispatcher: bool | None = None


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


def _switch(raw, key):
    text = str(raw[key]).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise ConfigurationError(
        f"<product-config {SECTION}> {key} must be on or off, not {raw[key]!r}"
    )


KNOWN = {
    "database",
    "threads",
    "poll-interval",
    "public-url",
    "default-quota-size",
    "dispatcher",
}


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
    return ProcessConfig(**values)
