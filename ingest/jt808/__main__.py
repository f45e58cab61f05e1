"""`python -m ingest.jt808 devices.yaml`: the JT/T 808 listener alone, journaling into the
site's journal (the fault tests kill it with -9; operators may run it beside the pipeline)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from ingest.config import load_config
from ingest.journal import Journal
from ingest.jt808.server import Jt808Listener, load_auth_key


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.jt808")
    parser.add_argument("config")
    parser.add_argument("--port-file", help="write the port listened on here once listening")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(args.config)
    assert config.storage.journal is not None
    journal = Journal(config.storage.journal)
    listener = Jt808Listener(config, journal, auth_key=load_auth_key(config.storage.root))
    listener.start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as out:
            out.write(str(listener.port))
        import os

        os.replace(args.port_file + ".tmp", args.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    listener.stop()
    journal.close()


if __name__ == "__main__":
    main()
