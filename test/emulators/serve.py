"""What every emulator here shares: serving on 127.0.0.1 and saying where.

serve(handler, port, port_file) binds 127.0.0.1 only (port 0: a free one),
writes the port to port_file atomically once it listens (the tests wait for
the file), and serves until killed.
"""

import os
from http.server import ThreadingHTTPServer


def serve(handler, port, port_file):
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    srv.serve_forever()
