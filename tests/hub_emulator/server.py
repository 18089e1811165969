"""HTTP plumbing: a threaded HTTP/1.1 server, request parsing, responses, errors and fault injection.

Endpoint logic lives in ``api.py``; this module only turns sockets into ``Request`` objects and
``Response`` objects (or ``HubError``) back into bytes, streaming file bodies with ``sendfile``.
"""

import collections
import json
import os
import re
import sys
import tempfile
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode

from .auth import Accounts
from .errors import HubError, Redirect
from .storage import Store


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    file: str = None  # stream ``length`` bytes of this file from ``offset`` instead of ``body``
    offset: int = 0
    length: int = 0


def json_response(data, status=200, headers=None):
    return Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


class Request:
    """One parsed request: method, percent-decoded path segments, query, user and a body reader."""

    def __init__(self, handler, app):
        self.handler = handler
        self.method = handler.command
        raw_path, _, raw_query = handler.path.partition("?")
        self.raw_path = raw_path
        self.raw_query = raw_query
        self.segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if self.segments and self.segments[-1] == "" and len(self.segments) > 1:
            self.segments.pop()
        self.query = parse_qs(raw_query, keep_blank_values=True)
        self.headers = handler.headers
        self.origin = f"http://{handler.headers.get('Host') or '127.0.0.1'}"
        self.app = app
        self._left = int(handler.headers.get("Content-Length") or 0)
        self._chunked = "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower()
        self._chunk_left = 0
        self._user = None

    @property
    def user(self):
        if self._user is None:
            self._user = (self.app.accounts.user_for(self.headers.get("Authorization")),)
        return self._user[0]

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name):
        return (self.arg(name) or "").lower() in ("1", "true")

    @property
    def content_length(self):
        return None if self._chunked else int(self.headers.get("Content-Length") or 0)

    def read_into(self, view):
        """Fill part of ``view`` from the body (Content-Length or chunked); 0 at the end."""
        rfile = self.handler.rfile
        if self._chunked:
            if self._chunk_left == 0:
                size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    self._chunked = False
                    return 0
                self._chunk_left = size
            n = rfile.readinto(view[: min(len(view), self._chunk_left)])
            self._chunk_left -= n
            if self._chunk_left == 0:
                rfile.readline()
            return n
        n = rfile.readinto(view[: min(len(view), self._left)]) if self._left else 0
        self._left -= n
        return n

    def body(self):
        chunks, buf = [], bytearray(1 << 16)
        while True:
            n = self.read_into(memoryview(buf))
            if not n:
                return b"".join(chunks)
            chunks.append(bytes(buf[:n]))

    def body_file(self):
        """The body spooled to a temp file past 8 MiB, rewound: for NDJSON commits of any size."""
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, dir=self.app.store.tmp_dir)
        buf = bytearray(1 << 20)
        while n := self.read_into(memoryview(buf)):
            spool.write(memoryview(buf)[:n])
        spool.seek(0)
        return spool

    def json(self):
        data = self.body()
        try:
            return json.loads(data) if data.strip() else {}
        except ValueError:
            raise HubError(400, "BadRequest", "Request body is not valid JSON") from None

    def form(self):
        return parse_qs(self.body().decode(), keep_blank_values=True)

    def drain(self):
        buf = bytearray(1 << 16)
        while self.read_into(memoryview(buf)):
            pass

    def next_url(self, **params):
        """Absolute URL of this request with some query params replaced: for ``Link: rel="next"``."""
        query = {k: v for k, v in self.query.items()}
        query.update({k: [str(v)] for k, v in params.items()})
        return f"{self.origin}{self.raw_path}?{urlencode(query, doseq=True)}"


DEFAULT_SETTINGS = {
    # page sizes of the Hub
    "tree_page_size": 1000, "tree_expand_page_size": 50, "commits_page_size": 50,
    # the Hub's limits (repositories-recommendations): 10,000 entries per folder is enforced by the
    # Hub (400 on push); files per repo and per commit are only recommended, so off (None) by default
    "max_entries_per_folder": 10_000, "max_files_per_repo": None, "max_files_per_commit": None,
}


class App:
    """Shared state of one emulator: the store, accounts, injected faults, settings and a request log."""

    def __init__(self, data_dir, accounts):
        self.store = Store(data_dir)
        self.accounts = accounts
        self.faults = []
        self.settings = dict(DEFAULT_SETTINGS)
        self.log = collections.deque(maxlen=10000)
        self.lock = threading.Lock()
        self.secret = uuid.uuid4().hex
        self.listings = RecentCache()

    def take_fault(self, method, path):
        """The fault this request meets, if any: the first matching one whose ``skip`` is used up."""
        with self.lock:
            for fault in self.faults:
                if fault["method"] in (method, "*") and (re.search(fault["path_regex"], path)
                                                         or re.search(fault["path_regex"], unquote(path))):
                    if fault["skip"] > 0:
                        fault["skip"] -= 1
                        return None
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


class RecentCache:
    """The last few values by key (tree listings by root, path and recursion), so that paging through
    a 10,000-entry folder lists it once rather than once per page."""

    def __init__(self, size=16):
        self.size = size
        self.items = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key, compute):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = compute()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vdata-hub-emulator/1.0"
    # Without TCP_NODELAY a response written in two pieces (headers, then body) can wait for the
    # client's delayed ACK (up to 40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True

    def do_GET(self):
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def dispatch(self):
        from .api import route

        app = self.server.app
        req = Request(self, app)
        fault = None if req.raw_path.startswith("/_emulator/") else app.take_fault(self.command, self.path)
        try:
            if fault and fault["when"] == "before":
                req.drain()
                raise fault_error(fault)
            response = route(req)
            if not isinstance(response, Response):
                response = json_response(response)
            if fault:  # "after": the request took effect, but its answer is lost
                raise fault_error(fault)
        except HubError as err:
            response = error_response(err, head=self.command == "HEAD")
        except Redirect as moved:
            response = json_response({"message": f"Moved to {moved.location}"}, 307, {"Location": moved.location})
        except Exception:  # a bug in the emulator: say so loudly, as a 500 the client will show
            traceback.print_exc(file=sys.stderr)
            response = error_response(HubError(500, "EmulatorBug", traceback.format_exc().splitlines()[-1]))
        try:
            req.drain()
        except Exception:
            self.close_connection = True
        status = "disconnected" if fault and fault["disconnect"] else response.status
        app.log.append({"method": self.command, "path": self.path, "status": status})
        if fault and fault["disconnect"]:
            self.close_connection = True  # no answer at all: the client sees the connection drop
            return
        self.send(response)

    def send(self, response):
        length = response.length if response.file else len(response.body)
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self._headers_buffer.append(b"\r\n")
        if response.file is None and self.command != "HEAD":
            self._headers_buffer.append(response.body)  # headers and body in one write
        self.flush_headers()
        if self.command == "HEAD" or response.file is None or not length:
            return
        with open(response.file, "rb") as f:
            offset, left = response.offset, length
            while left:
                sent = os.sendfile(self.connection.fileno(), f.fileno(), offset, left)
                if not sent:
                    break
                offset += sent
                left -= sent

    def log_message(self, format, *args):
        if os.environ.get("HUB_EMULATOR_VERBOSE"):
            super().log_message(format, *args)


def fault_error(fault):
    return HubError(fault["status"], fault.get("code") or "InjectedFault",
                    fault.get("message") or f"Injected fault {fault['status']}")


def error_response(err, head=False):
    """The Hub's error shape: ``X-Error-Code``, the message in ``X-Error-Message`` and in the JSON body's
    ``error`` (hf_raise_for_status shows both, once when they are equal), and a request id.

    A header holds one line of Latin-1 text: a message that does not fit is sent in the body only,
    unless the request is a HEAD (no body), where a flattened copy is better than none."""
    body = {"error": err.message, **err.extra}
    header_message = " ".join(err.message.split()).encode("ascii", "replace").decode()
    headers = {"X-Error-Code": err.code, "X-Request-Id": uuid.uuid4().hex, **err.headers}
    if header_message == err.message or head:
        headers["X-Error-Message"] = header_message
    return json_response(body, err.status, headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


def make_server(data_dir, port=0, host="127.0.0.1", users=(), orgs=()):
    """A ready-to-serve emulator (call ``serve_forever()``); ``port=0`` picks a free port."""
    server = Server((host, port), Handler)
    server.app = App(data_dir, Accounts.from_specs(list(users), list(orgs)))
    return server
