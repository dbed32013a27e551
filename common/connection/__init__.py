"""Connection protocols without I/O: what a sender and a receiver decide on one
connection, events in and actions out, as websockets' ``protocol.py`` does (the asyncio
shells in micwire.sender and micwire.receiver only move bytes and time).

- :mod:`.sender`: the sender's side of a stream, over all its connections: link states,
  back-off, the resume point, what to send next from the spool, acks and ``done``, the
  silence rule, the finish timeout, the report's counters (:mod:`.report`). The guest
  page runs its mirror (receiver/web/send-core.js).
- :mod:`.receiver`: the receiver's side of one connection.
"""
