"""The detector registry: canonical names, their groups and their parameter models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from service.detectors.av_sync import AvSyncDetector
from service.detectors.base import Detector, Params
from service.detectors.black import BlackDetector
from service.detectors.block_corruption import BlockCorruptionDetector
from service.detectors.blockiness import BlockinessDetector
from service.detectors.channel_silence import ChannelSilenceDetector
from service.detectors.clipping import ClippingDetector
from service.detectors.freeze import FreezeDetector
from service.detectors.loudness import LoudnessDetector
from service.detectors.silence import SilenceDetector
from service.detectors.true_peak import TruePeakDetector

DETECTORS: dict[str, type[Detector[Any]]] = {
    cls.name: cls
    for cls in (
        BlackDetector,
        FreezeDetector,
        BlockinessDetector,
        BlockCorruptionDetector,
        SilenceDetector,
        ChannelSilenceDetector,
        LoudnessDetector,
        ClippingDetector,
        TruePeakDetector,
        AvSyncDetector,
    )
}
# Run only when named: true_peak overlaps clipping on clipped audio, and delivery limits
# (-1 dBTP) are a house rule to opt in to, not a fault of every feed.
OPT_IN = frozenset({"true_peak"})
GROUPS: dict[str, list[str]] = {}
for _name, _cls in DETECTORS.items():
    GROUPS.setdefault(_cls.group, [])
    if _name not in OPT_IN:
        GROUPS[_cls.group].append(_name)


class DetectorConfigError(ValueError):
    """A detector selection or threshold is invalid; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def resolve_names(selection: Iterable[str] | None) -> list[str]:
    """Expand names and group names into detector names, in registry order (opt-in
    detectors only when named)."""
    if selection is None:
        return [n for n in DETECTORS if n not in OPT_IN]
    wanted: set[str] = set()
    for raw in selection:
        item = raw.strip()
        if item in DETECTORS:
            wanted.add(item)
        elif item in GROUPS:
            wanted.update(GROUPS[item])
        elif item:
            known = ", ".join([*GROUPS, *DETECTORS])
            raise DetectorConfigError("detectors", f"unknown detector or group {item!r} ({known})")
    if not wanted:
        raise DetectorConfigError("detectors", "no detector selected")
    return [n for n in DETECTORS if n in wanted]


def validate_thresholds(thresholds: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Params]:
    """Parse per-detector overrides into parameter models (raise naming the bad field)."""
    out: dict[str, Params] = {}
    for name, values in (thresholds or {}).items():
        if name not in DETECTORS:
            raise DetectorConfigError(f"thresholds.{name}", "unknown detector")
        if not isinstance(values, Mapping):
            raise DetectorConfigError(f"thresholds.{name}", "must be an object of parameters")
        try:
            out[name] = DETECTORS[name].params_model(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise DetectorConfigError(f"thresholds.{name}.{loc}", err["msg"]) from None
    return out


def build(
    selection: Iterable[str] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Detector[Any]]:
    names = resolve_names(selection)
    params = validate_thresholds(thresholds)
    return [DETECTORS[n](params.get(n) or DETECTORS[n].params_model()) for n in names]
