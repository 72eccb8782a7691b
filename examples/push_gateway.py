#!/usr/bin/env python3
"""A push gateway stub for trying Tern's push notifications (docs/mobile.md): it prints every push
Tern posts and answers 200, or the status given with --refuse-token for that device token.

    python3 examples/push_gateway.py --port 8090
    # mobile.push.gateway_url: http://127.0.0.1:8090/push

A real gateway would hand the push to APNs, FCM or a web push service instead of printing it.
Standard library only."""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port (printed first)")
    parser.add_argument("--refuse-token", action="append", default=[], metavar="PRID",
                        help="answer 503 for pushes to this device token (repeatable)")
    options = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                push = json.loads(body)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            refused = push.get("to") in options.refuse_token
            print(json.dumps({"status": 503 if refused else 200, "authorization": self.headers.get("Authorization"),
                              "push": push}), flush=True)
            self.send_response(503 if refused else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((options.host, options.port), Handler)
    print("listening on port %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
