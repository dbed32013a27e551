"""Connection protocols without I/O: what a sender and a receiver decide on one
connection, events in and actions out (the asyncio shells in micwire.sender and
micwire.receiver only move bytes and time)."""
