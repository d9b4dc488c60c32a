"""A loopback HTTPS server for `git http-backend`, for the tests only.

Usage: git_https_server.py CERT KEY PROJECT_ROOT [USER:PASSWORD]
Serves https://127.0.0.1:<port>/cgi-bin/git/<repo> and prints the port on its first line of output.
With USER:PASSWORD, every request needs HTTP basic authentication with them (else 401).
"""
import base64
import http.server
import os
import ssl
import sys
import tempfile

cert, key, root = sys.argv[1:4]
auth = sys.argv[4] if len(sys.argv) > 4 else None
expected = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None
os.environ["GIT_PROJECT_ROOT"] = root
os.environ["GIT_HTTP_EXPORT_ALL"] = "1"
serve_dir = tempfile.mkdtemp()
os.makedirs(os.path.join(serve_dir, "cgi-bin"))
script = os.path.join(serve_dir, "cgi-bin", "git")
with open(script, "w") as f:
    f.write("#!/bin/sh\nexec git http-backend\n")
os.chmod(script, 0o755)
os.chdir(serve_dir)

class Handler(http.server.CGIHTTPRequestHandler):
    # A forked CGI child would write to the raw socket, past TLS: go through the handler instead.
    have_fork = False

    def log_message(self, *args):
        pass

    def authorised(self):
        if expected is None or self.headers.get("Authorization") == expected:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self):
        if self.authorised():
            super().do_GET()

    def do_POST(self):
        if self.authorised():
            super().do_POST()

    def finish(self):
        # CGI answers end with the connection: end TLS properly (close_notify) so the client knows
        # the answer is complete.
        super().finish()
        try:
            self.connection.unwrap()
        except (OSError, ValueError):
            pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
