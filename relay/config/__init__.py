"""Settings: `relay.yaml` (path from RELAY_CONFIG) with every value overridable from the environment.

Built once at start-up and passed in; nothing else reads the environment. Secrets may be written
as `env:NAME` or `file:/path`; they are resolved here, held as `SecretStr` and never printed.

relay.config.load reads and validates; relay.config.settings is the object, relay.config.models
its sections, relay.config.secrets the `env:`/`file:` secrets, relay.config.redis_url the Sentinel URLs.
"""

from relay.config.load import DEFAULT_CONFIG, load_settings
from relay.config.models import (
    ConsoleConfig,
    DeliveryConfig,
    DurabilityConfig,
    GatewayConfig,
    MetricsConfig,
    SourceConfig,
)
from relay.config.secrets import (
    Secret,
    SecretList,
    UnresolvedSecret,
    read_dotenv,
    resolve_secret,
    unresolved_secrets,
)
from relay.config.settings import Settings

__all__ = [
    "DEFAULT_CONFIG",
    "ConsoleConfig",
    "DeliveryConfig",
    "DurabilityConfig",
    "GatewayConfig",
    "MetricsConfig",
    "Secret",
    "SecretList",
    "Settings",
    "SourceConfig",
    "UnresolvedSecret",
    "load_settings",
    "read_dotenv",
    "resolve_secret",
    "unresolved_secrets",
]
