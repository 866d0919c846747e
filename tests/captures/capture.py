#!/usr/bin/env python3
"""Capture raw QMP wire traffic from real QEMU peers as test fixtures.

Standard library only.  For every scenario NAME this writes, next to this file:

  NAME.bytes  every byte the server sent, in order, byte-exact (\\r\\n included)
  NAME.sent   every byte the client sent, in order, byte-exact

and summary.json, which records per scenario how the stream ended:

  "eof"           recv() returned b'' (the server closed cleanly)
  "econnreset"    recv() raised ConnectionResetError (server closed with
                  unread input still queued in its socket)
  "client-closed" the scenario does not quit; the client closed after the
                  server had been quiet for a while (no EOF was seen)

Usage:  python3 capture.py [SCENARIO ...]     (default: all scenarios)
        python3 capture.py --quit-newline-stats N   (repeat the quit+newline
        experiment N times with and without oob, print the EOF/ECONNRESET tally)

Commands are sent compact (json.dumps(separators=(",", ":"))) with NO trailing
newline unless a scenario says otherwise: QEMU's streaming lexer does not need one.
Timestamps inside events obviously differ from run to run.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

QSD = "qemu-storage-daemon"
QSYS = "qemu-system-x86_64"


def cmd(execute, arguments=None, id=None, oob=False, **kw):
    """Compact encoding of one QMP command. `id` may be any JSON value; pass
    a pre-encoded string via raw_id= to keep exact number spellings."""
    parts = ['"exec-oob":' if oob else '"execute":', json.dumps(execute)]
    out = "{" + "".join(parts)
    if arguments is not None:
        out += ',"arguments":' + json.dumps(arguments, separators=(",", ":"))
    if "raw_id" in kw:
        out += ',"id":' + kw["raw_id"]
    elif id is not None:
        out += ',"id":' + json.dumps(id, separators=(",", ":"))
    out += "}"
    return out.encode("ascii")


class Framer:
    """Incremental framing of server output by JSON structure (brace/bracket
    depth, string and escape state), not by newline: pretty=on output spans
    many lines. Bytes outside a top-level value (whitespace, \r\n, a stray
    0xFF from qemu-ga) are skipped."""

    def __init__(self):
        self.msgs = []
        self.cur = None  # bytearray of the value being framed, or None
        self.depth = 0
        self.in_str = False
        self.esc = False

    def feed(self, data):
        i, n = 0, len(data)
        while i < n:
            if self.cur is None:
                # skip to the start of the next top-level value
                j1, j2 = data.find(b"{", i), data.find(b"[", i)
                js = [j for j in (j1, j2) if j >= 0]
                if not js:
                    return
                i = min(js)
                self.cur = bytearray()
                self.depth = 0
            start = i
            while i < n:
                c = data[i]
                if self.in_str:
                    if self.esc:
                        self.esc = False
                    elif c == 0x5C:  # backslash
                        self.esc = True
                    elif c == 0x22:
                        self.in_str = False
                elif c == 0x22:
                    self.in_str = True
                elif c == 0x7B or c == 0x5B:  # { [
                    self.depth += 1
                elif c == 0x7D or c == 0x5D:  # } ]
                    self.depth -= 1
                    if self.depth == 0:
                        i += 1
                        self.cur += data[start:i]
                        self.msgs.append(bytes(self.cur))
                        self.cur = None
                        break
                i += 1
            else:
                self.cur += data[start:i]


def split_messages(buf):
    f = Framer()
    f.feed(buf)
    return f.msgs


def classify(raw):
    try:
        obj = json.loads(raw)
    except ValueError:
        # e.g. a number re-serialised as the bare token inf; fall back to text
        txt = raw.decode("ascii", "replace")
        if '"event"' in txt:
            return "event", None
        if '"return"' in txt or '"error"' in txt:
            return "response", None
        return "other", None
    if isinstance(obj, dict):
        if "QMP" in obj:
            return "greeting", obj
        if "event" in obj:
            return "event", obj
        if "return" in obj or "error" in obj:
            return "response", obj
    return "other", obj


class Peer:
    """One QEMU process plus one client connection, recording all traffic."""

    def __init__(self, argv_template, tmpdir):
        self.tmpdir = tmpdir
        self.sock_path = os.path.join(tmpdir, "qmp.sock")
        self.argv = [a.replace("SOCK", self.sock_path) for a in argv_template]
        self.stderr_path = os.path.join(tmpdir, "stderr.txt")
        self.stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr_f, stderr=self.stderr_f)
        self.received = bytearray()
        self.framer = Framer()
        self.kinds = []  # classify() of each framed message, in order
        self.sent = bytearray()
        self.end = None  # "eof" | "econnreset" | "client-closed"
        self.sock = self._connect()

    def _connect(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("peer exited early: %r rc=%s" % (self.argv, self.proc.returncode))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock_path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    # -- I/O -------------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)
        self.sent += data

    def _recv_once(self, timeout):
        """One recv with timeout. Returns False once the stream has ended."""
        if self.end is not None:
            return False
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ConnectionResetError:
            self.end = "econnreset"
            return False
        if not chunk:
            self.end = "eof"
            return False
        self.received += chunk
        before = len(self.framer.msgs)
        self.framer.feed(chunk)
        for m in self.framer.msgs[before:]:
            self.kinds.append(classify(m)[0])
        return True

    def messages(self):
        return self.framer.msgs

    def count(self, kind):
        return self.kinds.count(kind)

    def read_until(self, pred, timeout=15.0, settle=0.1):
        """Short-timeout read loop: read until pred() holds (or the stream
        ends / timeout), then keep draining until quiet for `settle` s so that
        trailing events are captured too."""
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            if not self._recv_once(0.05):
                break
        self.drain(settle)

    def drain(self, quiet):
        """Read until nothing has arrived for `quiet` seconds (or stream end)."""
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            before = len(self.received)
            if not self._recv_once(0.02):
                return
            if len(self.received) != before:
                last = time.monotonic()

    def expect_responses(self, n_total, timeout=15.0, settle=0.1):
        self.read_until(lambda: self.count("response") >= n_total, timeout, settle)

    def greeting(self):
        self.read_until(lambda: self.count("greeting") >= 1, settle=0.05)

    def until_eof(self, timeout=10.0):
        """Read until the server closes; records eof vs econnreset."""
        deadline = time.monotonic() + timeout
        while self.end is None and time.monotonic() < deadline:
            self._recv_once(0.05)

    def close(self):
        if self.end is None:
            self.end = "client-closed"
        try:
            self.sock.close()
        except OSError:
            pass
        # After quit the peer exits by itself; otherwise the client just
        # closed and the peer keeps listening, so stop it (SIGTERM to the one
        # process this script started).
        if self.end == "client-closed":
            self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr_f.close()
        with open(self.stderr_path, "rb") as f:
            self.stderr = f.read().decode("utf-8", "replace")


# --- command lines ------------------------------------------------------
QSD_ARGV = [QSD, "--chardev", "socket,id=m0,path=SOCK,server=on,wait=off",
            "--monitor", "chardev=m0"]
QSD_PRETTY_ARGV = [QSD, "--chardev", "socket,id=m0,path=SOCK,server=on,wait=off",
                   "--monitor", "chardev=m0,pretty=on"]
QSYS_ARGV = [QSYS, "-machine", "none", "-nodefaults", "-display", "none",
             "-qmp", "unix:SOCK,server=on,wait=off"]
QSYS_PC_ARGV = [QSYS, "-M", "pc", "-accel", "tcg", "-S", "-nodefaults", "-display", "none",
                "-qmp", "unix:SOCK,server=on,wait=off"]
QSYS_PRETTY_ARGV = [QSYS, "-machine", "none", "-nodefaults", "-display", "none",
                    "-chardev", "socket,id=m0,path=SOCK,server=on,wait=off",
                    "-mon", "chardev=m0,mode=control,pretty=on"]

CAPS = cmd("qmp_capabilities", id=1)
CAPS_OOB = cmd("qmp_capabilities", {"enable": ["oob"]}, id=1)


# --- scenarios ----------------------------------------------------------
# Each takes a connected Peer and drives it. Response counts passed to
# expect_responses are cumulative over the whole session.

def s_greeting(p):
    p.greeting()
    p.drain(0.3)  # nothing else should come


def s_session(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(cmd("query-version", id=2)); p.expect_responses(2)
    p.send(cmd("nope", id=3)); p.expect_responses(3)
    p.send(cmd("blockdev-del", {"node-name": "nosuchnode"}, id=4)); p.expect_responses(4)
    p.send(cmd("quit", id=5))
    p.until_eof()


def s_qsd_before_negotiation(p):
    p.greeting()
    p.send(cmd("query-version", id=1)); p.expect_responses(1)
    p.send(cmd("query-version", id=2, oob=True)); p.expect_responses(2)
    p.send(cmd("qmp_capabilities", {"enable": ["oob"]}, id=3)); p.expect_responses(3)
    p.send(cmd("qmp_capabilities", id=4)); p.expect_responses(4)


def s_qsd_job(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(cmd("blockdev-add", {"driver": "null-co", "node-name": "src", "size": 1048576}, id=2))
    p.expect_responses(2)
    p.send(cmd("blockdev-add", {"driver": "null-co", "node-name": "dst", "size": 1048576}, id=3))
    p.expect_responses(3)
    p.send(cmd("blockdev-backup", {"job-id": "j0", "device": "src", "target": "dst",
                                   "sync": "full"}, id=4))
    p.expect_responses(4)
    # wait ~1 s for JOB_STATUS_CHANGE / BLOCK_JOB_COMPLETED events
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        p._recv_once(0.05)
    p.send(cmd("quit", id=5))
    p.until_eof()


QSD_IDS = ['1.0', '1e2', '"str"', '{"a":1,"b":[1,2]}', 'null', 'true', '[1,"x"]',
           '18446744073709551616', '-5']


def s_qsd_ids(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    for k, raw in enumerate(QSD_IDS, start=2):
        p.send(cmd("query-version", raw_id=raw)); p.expect_responses(k)


def s_schema(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(cmd("query-qmp-schema", id=2)); p.expect_responses(2, timeout=30)


def s_qsd_parse_errors(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(b'{"execute": }'); p.drain(0.3)
    p.send(b'\x01'); p.drain(0.3)
    p.send(b'{"execute":"query-version","id":9}')
    p.read_until(lambda: any(b'"id": 9' in m for m in p.messages()), settle=0.3)


def s_qsys_session(p):
    p.greeting()
    p.send(CAPS_OOB); p.expect_responses(1)
    p.send(cmd("query-version", id=2)); p.expect_responses(2)
    p.send(cmd("query-status", id=3)); p.expect_responses(3)
    p.send(cmd("quit", id=4))
    p.until_eof()


def s_qsys_stopcont(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(cmd("query-status", id=2)); p.expect_responses(2)
    p.send(cmd("cont", id=3)); p.expect_responses(3)
    p.send(cmd("query-status", id=4)); p.expect_responses(4)
    p.send(cmd("stop", id=5)); p.expect_responses(5)
    p.send(cmd("query-status", id=6)); p.expect_responses(6)
    p.send(cmd("system_reset", id=7)); p.expect_responses(7, settle=0.3)
    p.send(cmd("quit", id=8))
    p.until_eof()


def s_qsys_oob(p):
    p.greeting()
    p.send(CAPS_OOB); p.expect_responses(1)
    p.send(b"".join([cmd("query-qmp-schema", id=1), cmd("query-qmp-schema", id=2),
                     cmd("query-qmp-schema", id=3), cmd("query-yank", id=99, oob=True)]))
    p.expect_responses(5, timeout=30)


def s_qsys_pretty(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(cmd("query-version", id=2)); p.expect_responses(2)
    p.send(cmd("query-status", id=3)); p.expect_responses(3)
    p.send(cmd("quit", id=4))
    p.until_eof()


def s_qsys_quit_newline(p):
    p.greeting()
    p.send(CAPS); p.expect_responses(1)
    p.send(b'{"execute":"quit"}\n')
    p.until_eof()


# How each stream ended when captured (also recorded in summary.json "end"):
#   EOF seen (server closed cleanly after quit): qsd-session, qsd-job,
#     qsd-pretty, qsys-session, qsys-stopcont, qsys-pretty
#   ECONNRESET (after the EOF-worthy bytes were all delivered): qsys-quit-newline
#     (racy: EOF in most runs, ECONNRESET in roughly 1 of 7)
#   no EOF, client closed after the server went quiet: qsd-greeting,
#     qsd-before-negotiation, qsd-ids, qsd-schema, qsd-parse-errors,
#     qsys-greeting, qsys-schema, qsys-oob
SCENARIOS = [
    ("qsd-greeting", QSD_ARGV, s_greeting),
    ("qsd-session", QSD_ARGV, s_session),
    ("qsd-before-negotiation", QSD_ARGV, s_qsd_before_negotiation),
    ("qsd-job", QSD_ARGV, s_qsd_job),
    ("qsd-ids", QSD_ARGV, s_qsd_ids),
    ("qsd-schema", QSD_ARGV, s_schema),
    ("qsd-parse-errors", QSD_ARGV, s_qsd_parse_errors),
    ("qsd-pretty", QSD_PRETTY_ARGV, s_session),
    ("qsys-greeting", QSYS_ARGV, s_greeting),
    ("qsys-session", QSYS_ARGV, s_qsys_session),
    ("qsys-schema", QSYS_ARGV, s_schema),
    ("qsys-stopcont", QSYS_PC_ARGV, s_qsys_stopcont),
    ("qsys-oob", QSYS_ARGV, s_qsys_oob),
    ("qsys-pretty", QSYS_PRETTY_ARGV, s_qsys_pretty),
    ("qsys-quit-newline", QSYS_ARGV, s_qsys_quit_newline),
]


def run(name, argv, fn, write=True):
    tmp = tempfile.mkdtemp(prefix="qmpcap-")
    try:
        p = Peer(argv, tmp)
        try:
            fn(p)
        finally:
            p.close()
        if write:
            with open(os.path.join(HERE, name + ".bytes"), "wb") as f:
                f.write(bytes(p.received))
            with open(os.path.join(HERE, name + ".sent"), "wb") as f:
                f.write(bytes(p.sent))
        return {
            "command_line": [a.replace(p.sock_path, "SOCK") for a in p.argv],
            "end": p.end,
            "bytes_received": len(p.received),
            "bytes_sent": len(p.sent),
            "messages": len(p.messages()),
            "exit_code": p.proc.returncode,
            "peer_output": re.sub(r"from pid \d+ \(.*?\)", "from pid N (python3)", p.stderr),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def quit_newline_stats(n):
    def with_oob(p):
        p.greeting()
        p.send(CAPS_OOB); p.expect_responses(1)
        p.send(b'{"execute":"quit"}\n')
        p.until_eof()

    def no_newline(p):
        p.greeting()
        p.send(CAPS); p.expect_responses(1)
        p.send(b'{"execute":"quit"}')
        p.until_eof()

    for label, argv, fn in [("qsys no-oob quit+\\n", QSYS_ARGV, s_qsys_quit_newline),
                            ("qsys oob quit+\\n", QSYS_ARGV, with_oob),
                            ("qsys no-oob quit", QSYS_ARGV, no_newline),
                            ("qsd no-oob quit+\\n", QSD_ARGV, s_qsys_quit_newline),
                            ("qsd no-oob quit", QSD_ARGV, no_newline)]:
        tally = {}
        for _ in range(n):
            r = run(label, argv, fn, write=False)
            tally[r["end"]] = tally.get(r["end"], 0) + 1
        print("%-22s %s" % (label, tally))


def main(args):
    if args[:1] == ["--quit-newline-stats"]:
        quit_newline_stats(int(args[1]) if len(args) > 1 else 20)
        return
    wanted = set(args)
    summary_path = os.path.join(HERE, "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    summary["_versions"] = {QSD: version(QSD), QSYS: version(QSYS)}
    for name, argv, fn in SCENARIOS:
        if wanted and name not in wanted:
            continue
        if name == "qsys-quit-newline":
            # Racy: QEMU may or may not read the trailing "\n" before it
            # closes the socket, so the client sees ECONNRESET only sometimes
            # (about 1 run in 7 here). Repeat until the ECONNRESET case is
            # captured (the bytes received are the same either way).
            tally = {}
            for attempt in range(1, 61):
                r = run(name, argv, fn)
                tally[r["end"]] = tally.get(r["end"], 0) + 1
                if r["end"] == "econnreset":
                    break
            r["attempts_until_econnreset"] = tally
        else:
            r = run(name, argv, fn)
        summary[name] = r
        print("%-24s end=%-13s recv=%7d sent=%4d msgs=%3d rc=%s" % (
            name, r["end"], r["bytes_received"], r["bytes_sent"], r["messages"], r["exit_code"]))
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
