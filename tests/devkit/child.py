"""A tiny service for the devkit's process tests, run as ``python -m tests.devkit.child``.

Environment: ``CHILD_SAY`` is printed; ``CHILD_IGNORE_TERM=1`` ignores
SIGTERM, ``CHILD_TERM_EXIT=N`` exits N on SIGTERM (a draining service);
``CHILD_HEALTH_PORT`` serves gRPC health (SERVING) there; ``CHILD_SLEEP``
seconds pass before it exits with ``CHILD_EXIT`` (default 0). It prints
``ready`` once its signal handling and health server are in place.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent import futures


def main() -> int:
    env = os.environ
    print(f"cwd={os.getcwd()}", flush=True)
    print(f"own-session={os.getsid(0) == os.getpid()}", flush=True)
    if "CHILD_SAY" in env:
        print(env["CHILD_SAY"], flush=True)
    if env.get("CHILD_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif "CHILD_TERM_EXIT" in env:
        code = int(env["CHILD_TERM_EXIT"])
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(code))
    server = None
    if "CHILD_HEALTH_PORT" in env:
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{env['CHILD_HEALTH_PORT']}")
        server.start()
    print("ready", flush=True)
    time.sleep(float(env.get("CHILD_SLEEP", "0")))
    return int(env.get("CHILD_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
