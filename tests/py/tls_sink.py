"""A TLS HTTP sink for tests/it/tls.rs, on 127.0.0.1: answers 204 to every
POST and appends one line per request to LOG: the path and the subject of
the client's certificate ("-" without one). With CLIENT_CA it requires a
client certificate signed by that CA.

    python3 tls_sink.py PORT CERT KEY LOG [CLIENT_CA]
"""

import http.server
import ssl
import sys


def main():
    port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    client_ca = sys.argv[5] if len(sys.argv) > 5 else None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            peer = self.connection.getpeercert()
            subject = "-"
            if peer:
                subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
            with open(log, "a") as f:
                f.write(f"{self.path} {subject}\n")
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
