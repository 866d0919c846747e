#!/usr/bin/env python3
"""Re-records the data the fake QEMU (src/server/fake.rs) answers from.

    python3 tools/record_fake_qemu.py [qemu-system-x86_64]

Starts `qemu-system-x86_64 -M pc -accel tcg -S -nodefaults -display none` twice and writes:

* src/server/qemu-schema.json: the return value of `query-qmp-schema`, as QEMU printed it;
* src/server/qemu-queries.txt: one line per `query-*` command that has no mandatory
  argument, `NAME<TAB>REPLY`, REPLY being QEMU's answer to the command without arguments
  (`{"return": ...}` or `{"error": ...}`) as QEMU printed it. Commands whose answer differs
  between the two runs or names the run's socket, process or threads are left out (listed
  on stderr), as are the ones the fake models itself.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "server")
# Modelled by the fake itself.
MODELLED = {"query-qmp-schema", "query-version", "query-status", "query-name",
            "query-fdsets", "query-jobs", "query-yank"}
# Host-specific (thread ids, host CPU features).
HOST = {"query-cpus-fast", "query-iothreads", "query-sev-capabilities",
        "query-sgx-capabilities", "query-migrationthreads"}


class Qemu:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="qmp-record-")
        self.path = os.path.join(self.dir, "qmp.sock")
        self.proc = subprocess.Popen(
            [binary, "-M", "pc", "-accel", "tcg", "-S", "-nodefaults", "-display", "none",
             "-qmp", "unix:%s,server=on,wait=off" % self.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(self.path):
            time.sleep(0.01)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)
        self.buf = b""
        self.line()
        self.ask({"execute": "qmp_capabilities"})

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("ascii")

    def ask(self, req):
        self.sock.sendall(json.dumps(req).encode())
        while True:
            line = self.line()
            if '"event"' not in line[:12] and not line.startswith('{"timestamp"'):
                return line

    def close(self):
        self.proc.kill()
        self.proc.wait()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    a, b = Qemu(binary), Qemu(binary)
    schema_line = a.ask({"execute": "query-qmp-schema"})
    prefix = '{"return": '
    assert schema_line.startswith(prefix) and schema_line.endswith("}")
    schema_text = schema_line[len(prefix):-1]
    schema = json.loads(schema_text)
    types = {e["name"]: e for e in schema}
    out = []
    for e in sorted(schema, key=lambda e: e["name"]):
        name = e["name"]
        if e["meta-type"] != "command" or not name.startswith("query-"):
            continue
        if name in MODELLED or name in HOST:
            continue
        members = types[e["arg-type"]].get("members", [])
        if any("default" not in m for m in members):
            continue
        ra = a.ask({"execute": name})
        rb = b.ask({"execute": name})
        if ra != rb or a.dir in ra or str(a.proc.pid) in ra:
            print("left out (differs between runs): " + name, file=sys.stderr)
            continue
        out.append(name + "\t" + ra + "\n")
    a.close()
    b.close()
    with open(os.path.join(OUT, "qemu-schema.json"), "w") as f:
        f.write(schema_text + "\n")
    with open(os.path.join(OUT, "qemu-queries.txt"), "w") as f:
        f.writelines(out)


if __name__ == "__main__":
    main()
