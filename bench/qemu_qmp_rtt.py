"""Round trips of query-version with the Python reference client qemu.qmp.

usage: qemu_qmp_rtt.py SOCK sequential|concurrent N

Connects (and negotiates) first, then times N round trips: one after the other, or shared
by 100 concurrent tasks on the one connection. Prints how many were done and the seconds
they took.
"""

import asyncio
import sys
import time

from qemu.qmp import QMPClient

CALLERS = 100


async def main(sock: str, mode: str, n: int) -> None:
    qmp = QMPClient("bench")
    await qmp.connect(sock)
    if mode == "sequential":
        start = time.perf_counter()
        for _ in range(n):
            await qmp.execute("query-version")
        done = n
    else:
        per_caller = n // CALLERS

        async def caller() -> None:
            for _ in range(per_caller):
                await qmp.execute("query-version")

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        done = per_caller * CALLERS
    took = time.perf_counter() - start
    await qmp.disconnect()
    print(done, took)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
