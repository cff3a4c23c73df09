"""Redis key names (one place, so tests and tools agree)."""

from __future__ import annotations

PREFIX = "avmon:"
STREAMS = PREFIX + "streams"  # hash id -> stream spec JSON
NAMES = PREFIX + "stream_names"  # hash name -> id (unique names)
REGISTRY_VERSION = PREFIX + "registry_version"  # bumped on every registry change
MEMBERS = PREFIX + "members"  # zset member -> expiry (ms, Redis clock)
MEMBER_INFO = PREFIX + "member_info"  # hash member -> JSON {ready, units, load}
LEASES = PREFIX + "leases"  # hash "stream|group" -> "owner|epoch|expires_ms"
LAST = PREFIX + "lease_last"  # hash "stream|group" -> "owner|epoch" (no expiry)
EPOCH = PREFIX + "epoch"  # fencing epoch counter
RESERVED = PREFIX + "lease_reserved"  # hash "stream|group" -> "successor|until_ms"
DEFECTS = PREFIX + "defects"  # hash id -> DefectRecord JSON
DEFECTS_BY_TIME = PREFIX + "defects_by_time"  # zset id -> started_at
OPEN = PREFIX + "defects_open"  # set of open defect ids
EVENTS = PREFIX + "events"  # pub/sub channel: defect open/close feed
EVENT_LOG = PREFIX + "event_log"  # stream: every committed open/close (webhooks read it)
EVENT_SEQ = PREFIX + "event_seq"  # sequence number of the newest log entry
WEBHOOK_CURSORS = PREFIX + "webhook_cursors"  # hash receiver -> "entry id|seq" delivered
HANDOFF = PREFIX + "handoff"  # pub/sub channel: a member released units
# Make-before-break handoff: the owner asks the successor to warm up (hash "stream|group"
# -> "successor|until_ms"); the successor answers once it analyses the stream (same form).
WARM = PREFIX + "handoff_warm"
WARMED = PREFIX + "handoff_warmed"
GENERATION = PREFIX + "generation"  # bumped when a member finds Redis restarted empty
# The event log's birth mark (Redis server time when its first entry was written): a new
# mark means the log was lost (Redis restarted empty) and members re-stage what they kept.
LOG_BORN = PREFIX + "event_log_born"
LOG_RECOVERING = PREFIX + "event_log_recovering"  # set for a while after a new mark is seen


def stream_defects(stream_id: str) -> str:
    return f"{PREFIX}stream_defects:{stream_id}"


def member_status(member: str) -> str:
    """Hash stream id -> JSON status of what ``member`` runs of that stream, rewritten by
    the member every status tick and expiring with it. Per member: a stream's units may
    run on different members, and one record per stream made every other owner's units
    look stopped."""
    return f"{PREFIX}status:{member}"


def thumbnail(stream_id: str) -> str:
    return f"{PREFIX}thumb:{stream_id}"


def evidence(defect_id: str) -> str:
    return f"{PREFIX}evidence:{defect_id}"


def unit_field(stream_id: str, group: str) -> str:
    return f"{stream_id}|{group}"


def handed(stream_id: str, group: str) -> str:
    """JSON list of the unit's runs its last owner saw begin and had not raised (short
    lived: read by the successor when it claims the unit)."""
    return f"{PREFIX}handed:{stream_id}|{group}"


def webhook_receiver(url: str) -> str:
    """A webhook receiver's name in Redis (its cursor, its holder): never the URL itself,
    which may carry a token."""
    import hashlib

    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


def webhook_holder(receiver: str) -> str:
    return f"{PREFIX}webhook_holder:{receiver}"


def webhook_recovered(receiver: str) -> str:
    """Events re-staged for ``receiver`` after the log was lost (zset, original order)."""
    return f"{PREFIX}webhook_recovered:{receiver}"
