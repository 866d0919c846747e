#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from the transcript fixtures.

The client and pair seeds follow the byte encoding of the target bodies in src/testing/fuzz.rs:
a few configuration bytes (flag 128: guest agent mode), then operations (0: server bytes with a length byte; 5: execute;
8: clock step; 9: end of stream; 10: connect). Run from the repository root:
python3 fuzz/seeds.py
"""
import hashlib, os, re, pathlib

root = pathlib.Path(__file__).resolve().parent.parent
fixtures = sorted((root / "tests" / "transcripts").glob("*.qmp"))

def unescape(text):
    out = bytearray(); i = 0
    b = text.encode()
    while i < len(b):
        if b[i] == 0x5c and i + 1 < len(b):
            c = chr(b[i + 1])
            if c == 'x':
                out.append(int(b[i + 2:i + 4], 16)); i += 4; continue
            out += {'r': b'\r', 'n': b'\n', 't': b'\t', '\\': b'\\'}.get(c, b'')
            i += 2
        else:
            out.append(b[i]); i += 1
    return bytes(out)

def server_bytes(path):
    """The bytes the server sends in a fixture, in order, and how many commands it runs."""
    out = []; commands = 0
    for line in path.read_text().splitlines():
        if line.startswith('<- '):
            out.append(line[3:].encode() + b'\r\n')
        elif line.startswith('<~ '):
            out.append(unescape(line[3:]))
        elif line.startswith('<-lines '):
            _, rel, a, z = line.split()
            data = (root / 'tests' / rel).read_bytes().split(b'\n')
            lines = [l + b'\n' for l in data]
            out.append(b''.join(lines[int(a) - 1:int(z)]))
        elif line.startswith('<-file '):
            out.append((root / 'tests' / line.split()[1]).read_bytes())
        elif line.startswith('execute'):
            commands += 1
    return out, commands

def chunks(data, n=255):
    for i in range(0, len(data), n):
        yield data[i:i + n]

def write(target, name, data):
    d = root / 'fuzz' / 'corpus' / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

for f in fixtures:
    msgs, commands = server_bytes(f)
    stream = b''.join(msgs)
    if len(stream) > 64 * 1024:
        stream = stream[:64 * 1024]
    # framer: max size byte, depth byte, chunk byte, input.
    write('framer', f.stem, bytes([255, 69, 7]) + stream[:8 * 1024])
    # client: flags (oob, in-flight 8), max size, depth, event bound; executes; server bytes.
    agent = 'guest_agent=true' in f.read_text()
    seed = bytearray([8 | 7 | (128 if agent else 0), 255, 39, 15])
    for _ in range(min(commands, 8)):
        seed += bytes([5, 0])
    for m in msgs:
        for c in chunks(m):
            seed += bytes([0, len(c)]) + c
    seed += bytes([8, 255, 9, 0])
    write('client', f.stem, bytes(seed[:8 * 1024]))
    # server: the client's side of a session is not in the fixture; use the requests of
    # the captures instead (below). Here: the server's bytes as garbage input.
    write('server', f.stem, bytes([0]) + b''.join(bytes([0, len(c)]) + c for c in chunks(stream[:4096])))

for sent in sorted((root / 'tests' / 'captures').glob('*.sent')):
    data = sent.read_bytes()
    seed = bytearray([32])
    seed += bytes([0, 37]) + b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}'[:37]
    for c in chunks(data):
        seed += bytes([0, len(c)]) + c
    write('server', 'capture-' + sent.stem, bytes(seed))
    # pair: issue commands and pump the bytes through.
    write('pair', 'capture-' + sent.stem, bytes([1, 8] + [0, 0, 3, 255, 4, 255, 0, 1, 3, 255, 4, 255, 5, 30, 3, 255, 4, 255, 2, 3, 255, 4, 255, 0, 5, 3, 255, 4, 255]))
