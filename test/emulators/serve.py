"""What every emulator here shares: serving on 127.0.0.1 and saying where.

serve(handler, port, port_file) binds 127.0.0.1 only (port 0: a free one),
writes the port to port_file atomically once it listens (the tests wait for
the file), and serves until killed.
"""

import os
import threading
from http.server import ThreadingHTTPServer as _Server


class ThreadingHTTPServer(_Server):
    """One thread a connection; a listen queue deep enough for a burst of
    connections (the standard library's 5 resets the rest)."""

    request_queue_size = 128


def serve(handler, port, port_file):
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    srv.serve_forever()


def serve_many(servers, port_file, ready=None):
    """Like serve, for several servers at once.

    servers is a list of (handler, port), each bound on 127.0.0.1 (port 0: a
    free one).  Once all listen, ready(ports) is called (the ports in the
    same order), then the first server's port is written to port_file
    atomically; all serve until killed.
    """
    srvs = [ThreadingHTTPServer(("127.0.0.1", port), handler) for handler, port in servers]
    ports = [s.server_address[1] for s in srvs]
    if ready:
        ready(ports)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(ports[0]))
    os.rename(port_file + ".tmp", port_file)
    for s in srvs[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    srvs[0].serve_forever()
