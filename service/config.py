"""Settings from the environment (prefix ``AVMON_``); bad values fail at start-up."""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.detectors.registry import GROUPS
from service.media.guard import AddressPolicy

# Denied unless the allowlist opts back in (DESIGN.md section 8): link-local (incl. cloud
# metadata 169.254.169.254), metadata services, loopback and unspecified, IPv4 and IPv6
# (IPv4-mapped IPv6 is judged as IPv4). The process's own addresses are refused too.
# Private ranges stay allowed: broadcast feeds live there.
DEFAULT_DENYLIST = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
)

CsvList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVMON_", extra="ignore", frozen=True)

    redis_url: str | None = Field(None, description="unset: embedded single process")
    data_dir: str | None = Field(None, description="embedded: keep streams, defects, events")
    pod_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=253)
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    api_token: SecretStr | None = None
    webhook_urls: CsvList = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    webhook_retention_s: float = Field(
        86_400.0, ge=60.0, le=30 * 86_400.0, description="undelivered events kept this long"
    )
    allow_file_sources: bool = False
    source_allowlist: CsvList = Field(default_factory=list)
    source_denylist: CsvList = Field(default_factory=lambda: list(DEFAULT_DENYLIST))
    lease_ttl: float = Field(3.0, gt=0.2, le=60.0)
    max_units: int = Field(64, ge=1, le=10_000)
    workers: int = Field(1, ge=1, le=64, description="embedded: stream worker processes")
    detector_groups: CsvList = Field(default_factory=lambda: list(GROUPS))
    k8s_deletion_cost: bool = False
    max_defects: int = Field(10_000, ge=100, le=1_000_000, description="defects kept in memory")
    no_signal_s: float = Field(5.0, gt=0.0, le=3600.0)
    source_timeout_s: float = Field(3.0, gt=0.0, le=120.0)
    decode_threads: Literal["auto", "single", "frame"] = Field(
        "auto", description="auto: frame threads only while streams < cores"
    )
    decode_frames: Literal["all", "reference"] = Field(
        "all", description="reference: drop non-reference pictures (see decode_frames.py)"
    )
    max_streams: int = Field(200, ge=1, le=100_000, description="streams per process (429)")
    max_body_bytes: int = Field(65_536, ge=1024, le=16 * 1024 * 1024, description="413 above")
    max_sse_subscribers: int = Field(100, ge=1, le=10_000, description="429 above")
    # The container's log; handoffs are logged at info (rare, and what operators ask after).
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")

    def address_policy(self) -> AddressPolicy:
        """Who sources may contact (the allowlist opts back in to any denied address)."""
        return AddressPolicy.from_lists(self.source_allowlist, self.source_denylist)

    _split_lists = field_validator(
        "webhook_urls", "source_allowlist", "source_denylist", "detector_groups", mode="before"
    )(_split)

    @field_validator("source_allowlist", "source_denylist")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not a CIDR network: {item!r}") from None
        return value

    @field_validator("detector_groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        unknown = [g for g in value if g not in GROUPS]
        if unknown or not value:
            raise ValueError(f"unknown detector groups {unknown} (known: {', '.join(GROUPS)})")
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _not_a_service_link(cls, value: object) -> object:
        if isinstance(value, str) and value.startswith("tcp://"):
            raise ValueError(
                f"AVMON_PORT={value!r} is the variable Kubernetes sets for a Service named "
                "avmon: set enableServiceLinks: false on the pod (the chart does), or "
                "AVMON_PORT to a port number"
            )
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhooks(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL must be http(s): {url!r}")
        return value
