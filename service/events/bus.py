"""The live feed (SSE): committed defect events from pipeline threads to subscribers.

Publishing never blocks the pipeline: asyncio subscribers get events through their loop
with bounded queues (a slow reader loses events and is told so). Webhooks do not come
from here but from the committed event log (``service.events.delivery``).
"""

from __future__ import annotations

import asyncio
import threading

from service.events.model import FeedEvent


class EventBus:
    def __init__(self, feed_local: bool = True) -> None:
        # Cluster mode: the live feed comes from Redis pub/sub (every member's events),
        # so local events go to the sinks (webhooks) only.
        self.feed_local = feed_local
        self._subscribers: set[
            tuple[asyncio.AbstractEventLoop, asyncio.Queue[FeedEvent | None]]
        ] = set()
        self._lock = threading.Lock()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[FeedEvent | None]:
        """A queue of events for the calling event loop (the SSE endpoint)."""
        queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(maxsize)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[FeedEvent | None]) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}

    def publish(self, event: FeedEvent) -> None:
        if self.feed_local:
            self.deliver(event)

    def deliver(self, event: FeedEvent) -> None:
        """Hand an event to the live-feed subscribers (SSE)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # loop closed: the client went away
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue[FeedEvent | None], event: FeedEvent) -> None:
    if queue.full():
        return  # a reader that stopped reading loses events, the pipeline does not wait
    queue.put_nowait(event)
