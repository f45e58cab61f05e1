"""JT/T 808 (2013 and 2019) for vehicle terminals: framing, headers, location reports, and the
TCP listener that journals them before it acknowledges (0x8001). See server.py."""

from ingest.jt808.server import Jt808Listener, load_auth_key

__all__ = ["Jt808Listener", "load_auth_key"]
