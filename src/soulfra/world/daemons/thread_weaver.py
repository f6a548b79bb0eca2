"""ThreadWeaver: opens threads on topics, routes posts, weaves related threads together, closes stale ones.

A post goes to the open thread on its topic (or the one named), opening one if needed; when the world already
has its bound of open threads, the stalest is closed first. Every tick it weaves threads that ended up on the
same topic into the older one, and closes threads nobody has posted in for ``STALE`` ticks.
"""

from __future__ import annotations

from dataclasses import replace

from soulfra.world.events import Event, PostMade, ThreadClosed, ThreadOpened, ThreadsWoven, VisitorPosted
from soulfra.world.model import RECENT_POSTS, Thread, WorldState

STALE = 40
MAX_PARTICIPANTS = 16


def max_open(state: WorldState) -> int:
    return min(256, 8 + state.size // 50)


class ThreadWeaver:
    def open_thread(self, state: WorldState, agent: int, topic: str, events: list[Event]) -> Thread:
        if len(state.threads) >= max_open(state):
            stalest = min(state.threads.values(), key=lambda t: (t.last, t.id))
            self._close(state, stalest, events)
        thread = Thread(
            id=state.take_id("thread"), topic=topic, opened=state.tick, last=state.tick, posts=0,
            participants=(), recent=(),
        )  # fmt: skip
        state.threads[thread.id] = thread
        events.append(ThreadOpened(tick=state.tick, thread=thread.id, topic=topic, agent=state.specs[agent].id))
        return thread

    def find(self, state: WorldState, topic: str) -> Thread | None:
        for thread in state.threads.values():
            if thread.topic == topic:
                return thread
        return None

    def post(
        self, state: WorldState, agent: int, topic: str, text: str, events: list[Event], thread_id: int = 0
    ) -> int:
        """Route a post; returns the thread's previous poster (-1 if none), whom the poster now knows better."""
        thread = state.threads.get(thread_id) if thread_id else self.find(state, topic)
        if thread is None:
            thread = self.open_thread(state, agent, topic, events)
        previous = thread.recent[-1][1] if thread.recent else -1
        participants = thread.participants
        if agent not in participants:
            participants = tuple(sorted((*participants, agent)))[-MAX_PARTICIPANTS:]
        # The constructor, not ``dataclasses.replace``: a post is the commonest action, and replace costs 3x more.
        state.threads[thread.id] = Thread(
            id=thread.id,
            topic=thread.topic,
            opened=thread.opened,
            last=state.tick,
            posts=thread.posts + 1,
            participants=participants,
            recent=(*thread.recent, (state.tick, agent, text))[-RECENT_POSTS:],
            woven=thread.woven,
        )
        loop = state.loop
        loop.posts += 1
        loop.topics[thread.topic] = loop.topics.get(thread.topic, 0) + 1
        events.append(
            PostMade(tick=state.tick, agent=state.specs[agent].id, thread=thread.id, topic=thread.topic, text=text)
        )
        return previous

    def visit(self, state: WorldState, origin: str, thread_id: int, text: str, events: list[Event]) -> bool:
        """A post from an agent of a linked instance into an open thread; its author is recorded as ``-1``."""
        thread = state.threads.get(thread_id)
        if thread is None:
            return False
        state.threads[thread_id] = replace(
            thread,
            last=state.tick,
            posts=thread.posts + 1,
            recent=(*thread.recent, (state.tick, -1, f"{origin}: {text}"))[-RECENT_POSTS:],
        )
        loop = state.loop
        loop.posts += 1
        loop.topics[thread.topic] = loop.topics.get(thread.topic, 0) + 1
        events.append(VisitorPosted(tick=state.tick, origin=origin, thread=thread_id, topic=thread.topic, text=text))
        return True

    def weave(self, state: WorldState, thread_id: int, into_id: int, events: list[Event]) -> bool:
        thread, into = state.threads.get(thread_id), state.threads.get(into_id)
        if thread is None or into is None or thread_id == into_id:
            return False
        state.threads[into_id] = replace(
            into,
            last=max(into.last, thread.last),
            posts=into.posts + thread.posts,
            participants=tuple(sorted(set(into.participants) | set(thread.participants)))[-MAX_PARTICIPANTS:],
            recent=tuple(sorted(into.recent + thread.recent))[-RECENT_POSTS:],
            woven=(*into.woven, thread_id),
        )
        del state.threads[thread_id]
        events.append(ThreadsWoven(tick=state.tick, thread=thread_id, into=into_id, topic=into.topic))
        return True

    def maintain(self, state: WorldState, events: list[Event]) -> None:
        by_topic: dict[str, int] = {}
        for thread in sorted(state.threads.values(), key=lambda t: t.id):
            if state.tick - thread.last > STALE:
                self._close(state, thread, events)
            elif thread.topic in by_topic:
                self.weave(state, thread.id, by_topic[thread.topic], events)
            else:
                by_topic[thread.topic] = thread.id

    def _close(self, state: WorldState, thread: Thread, events: list[Event]) -> None:
        del state.threads[thread.id]
        events.append(ThreadClosed(tick=state.tick, thread=thread.id, topic=thread.topic, posts=thread.posts))
