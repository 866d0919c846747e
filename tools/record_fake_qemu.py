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
* src/server/qemu-machine.txt: the machine object, `/machine`: a line
  `qom-list /machine<TAB>REPLY`, then one `qom-get /machine PROPERTY<TAB>REPLY` per
  property (REPLY as above; the RTC's time, and any property whose value differs between
  the runs, are left out);
* src/server/qemu-devices.txt: the device types, `NAME<TAB>concrete` or `NAME<TAB>abstract`
  (`qom-list-types` with `implements: device`), sorted by name;
* src/server/qemu-ints.txt: the integer members whose C type is not `int64` (the schema
  shows them all as `int`), one line `TYPE<TAB>MEMBER<TAB>CTYPE` (TYPE is the schema's
  masked object type name; CTYPE `uint64` for uint64 and size, or `uint8_t` ... `int32_t`;
  in brackets for an array of them).
  Each is found by sending a request that is valid up to that member, with a string there
  (`Parameter 'x' expects uint64` or `... expected: integer`), then with a value out of
  the 32-bit range (`Parameter 'x' expects uint8_t`); an extra unknown member at the same
  level makes sure no request is ever executed.
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
MODELLED = {"query-qmp-schema", "query-version", "query-status", "query-name", "query-chardev",
            "query-fdsets", "query-jobs", "query-yank", "query-pci", "query-mice",
            "query-memdev"}
# Properties of /machine that follow the host's clock.
CLOCK = {"rtc-time"}
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
    ints = probe_ints(a, types)
    devices = device_types(a)
    machine = machine_object(a, b)
    a.close()
    b.close()
    with open(os.path.join(OUT, "qemu-schema.json"), "w") as f:
        f.write(schema_text + "\n")
    with open(os.path.join(OUT, "qemu-queries.txt"), "w") as f:
        f.writelines(out)
    with open(os.path.join(OUT, "qemu-ints.txt"), "w") as f:
        f.writelines("%s\t%s\t%s\n" % k for k in sorted(ints))
    with open(os.path.join(OUT, "qemu-devices.txt"), "w") as f:
        f.writelines(devices)
    with open(os.path.join(OUT, "qemu-machine.txt"), "w") as f:
        f.writelines(machine)


def machine_object(a, b):
    """`qom-list /machine`, and `qom-get` of each of its properties, as lines."""
    listed = a.ask({"execute": "qom-list", "arguments": {"path": "/machine"}})
    assert listed == b.ask({"execute": "qom-list", "arguments": {"path": "/machine"}})
    out = ["qom-list /machine\t" + listed + "\n"]
    for prop in json.loads(listed)["return"]:
        req = {"execute": "qom-get", "arguments": {"path": "/machine", "property": prop["name"]}}
        ra, rb = a.ask(req), b.ask(req)
        if ra != rb or prop["name"] in CLOCK:
            print("left out (differs between runs): /machine " + prop["name"], file=sys.stderr)
            continue
        out.append("qom-get /machine %s\t%s\n" % (prop["name"], ra))
    return out


def device_types(q):
    """The device types: `NAME<TAB>abstract` or `NAME<TAB>concrete`, sorted."""
    def names(abstract):
        r = json.loads(q.ask({"execute": "qom-list-types",
                              "arguments": {"implements": "device", "abstract": abstract}}))
        return {t["name"] for t in r["return"]}
    concrete = names(False)
    every = names(True)
    return ["%s\t%s\n" % (n, "concrete" if n in concrete else "abstract") for n in sorted(every)]


PROBE = "zzz-probe"


def valid(types, name, depth=0):
    """A valid value of a type (None if none can be made)."""
    t = types[name]
    mt = t["meta-type"]
    if depth > 12:
        return None
    if mt == "builtin":
        return {"string": "x", "int": 0, "number": 0, "boolean": False, "null": None,
                "value": 0}[t["json-type"]]
    if mt == "enum":
        return t["values"][0]
    if mt == "array":
        return []
    if mt == "alternate":
        for m in t["members"]:
            v = valid(types, m["type"], depth + 1)
            if v is not None or types[m["type"]].get("json-type") == "null":
                return v
        return None
    if mt == "object":
        d = {}
        for m in t["members"]:
            if "default" in m:
                continue
            v = valid(types, m["type"], depth + 1)
            if v is None and types[m["type"]].get("json-type") != "null":
                return None
            d[m["name"]] = v
        if "variants" in t and d.get(t["tag"]) is not None:
            for var in t["variants"]:
                if var["case"] == d[t["tag"]]:
                    more = valid(types, var["type"], depth + 1)
                    if more is None:
                        return None
                    d.update(more)
        return d
    return None


def paths(types, name, depth=0, seen=()):
    """Every (object type, member, builder) under a type: builder(value) is a value of
    the type, valid up to that member, with `value` there and an unknown member beside."""
    t = types[name]
    mt = t["meta-type"]
    if depth > 8 or name in seen:
        return
    seen = seen + (name,)
    if mt == "array":
        for owner, member, build in paths(types, t["element-type"], depth + 1, seen):
            yield owner, member, (lambda build: lambda v: [build(v)])(build)
    elif mt == "alternate":
        for m in t["members"]:
            yield from paths(types, m["type"], depth + 1, seen)
    elif mt == "object":
        yield from object_paths(types, name, t, None, depth, seen)


def object_paths(types, name, t, case, depth, seen):
    members = list(t["members"])
    branches = []
    if "variants" in t:
        branches = [(v["case"], types[v["type"]]) for v in t["variants"]]
    base = valid(types, name, depth + 1) if case is None else None
    for i, m in enumerate(members):
        mtype = types[m["type"]]
        def build_here(v, m=m):
            d = dict(valid_prefix(types, t) or {})
            d[m["name"]] = v
            d[PROBE] = 1
            return d
        if is_int(types, m["type"]):
            yield name, m["name"], build_here
        for owner, member, build in paths(types, m["type"], depth + 1, seen):
            yield owner, member, (lambda build, m=m: lambda v: {
                **(valid_prefix(types, t) or {}), m["name"]: build(v)})(build)
    for tag_value, bt in branches:
        for m in bt["members"]:
            mtype = types[m["type"]]
            def build_branch(v, m=m, tag_value=tag_value, bt=bt):
                d = dict(valid_prefix(types, t) or {})
                d[t["tag"]] = tag_value
                d.update(valid_prefix(types, bt) or {})
                d[m["name"]] = v
                d[PROBE] = 1
                return d
            if is_int(types, m["type"]):
                yield bt["name"], m["name"], build_branch
            for owner, member, build in paths(types, m["type"], depth + 1, seen):
                yield owner, member, (lambda build, m=m, tag_value=tag_value, bt=bt: lambda v: {
                    **(valid_prefix(types, t) or {}), t["tag"]: tag_value,
                    **(valid_prefix(types, bt) or {}), m["name"]: build(v)})(build)


def is_int(types, name):
    """An integer, or an array of integers."""
    t = types[name]
    if t["meta-type"] == "array":
        t = types[t["element-type"]]
    return t["meta-type"] == "builtin" and t["json-type"] == "int"


def valid_prefix(types, t):
    """Valid values for the mandatory members of an object (without its variants)."""
    d = {}
    for m in t["members"]:
        if "default" in m:
            continue
        v = valid(types, m["type"])
        d[m["name"]] = v
    return d


def probe_ints(q, types):
    found = {}
    for e in types.values():
        if e["meta-type"] != "command" or e["name"] == "device_add":
            continue
        for owner, member, build in object_paths(types, e["arg-type"], types[e["arg-type"]],
                                                 None, 0, ()):
            if (owner, member) in found:
                continue
            array = "[" in member_type(types, owner, member)
            wrap = (lambda v: [v]) if array else (lambda v: v)
            args = build(wrap("x"))
            if not isinstance(args, dict):
                continue
            r = json.loads(q.ask({"execute": e["name"], "arguments": args}))
            desc = r.get("error", {}).get("desc", "")
            if desc.endswith("expects uint64"):
                kind = "uint64"
                r = json.loads(q.ask({"execute": e["name"], "arguments": build(wrap(1 << 40))}))
                desc = r.get("error", {}).get("desc", "")
                for k in ("uint8_t", "uint16_t", "uint32_t"):
                    if desc.endswith("expects " + k):
                        kind = k
            elif desc.endswith("expected: integer"):
                kind = "int64"
                r = json.loads(q.ask({"execute": e["name"], "arguments": build(wrap(-(1 << 40)))}))
                desc = r.get("error", {}).get("desc", "")
                for k in ("int8_t", "int16_t", "int32_t"):
                    if desc.endswith("expects " + k):
                        kind = k
            else:
                continue
            found[(owner, member)] = "[%s]" % kind if array else kind
    return [(o, m, k) for (o, m), k in found.items() if k not in ("int64", "[int64]")]


def member_type(types, owner, member):
    for m in types[owner]["members"]:
        if m["name"] == member:
            return m["type"]
    return ""


if __name__ == "__main__":
    main()
