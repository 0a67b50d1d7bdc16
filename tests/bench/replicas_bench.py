"""Throughput of one lensd replica against three behind HAProxy (deploy/haproxy), one run, one
machine: the same Decode (all layers, top-5, the default statistics, a 24-token prompt of the
demo model) from `--clients` client processes through the balancer for `--seconds` each, first
with one replica behind it, then with three. Each replica runs libtorch on one thread
(--intra_op_threads=1), so that what the balancer spreads is visible on a small machine; the
clients share the machine with the servers. Starts its own PostgreSQL (the replicas' job store)
with tests/postgres/postgres.sh.

    .venv/bin/python tests/bench/replicas_bench.py [--clients 6] [--seconds 15]
(with PYTHONPATH holding the Python client, e.g. build/python-client)"""
import argparse
import multiprocessing
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from replicas import Cluster  # noqa: E402

import lensd  # noqa: E402

PROMPT = ("And God said, Let there be light: and there was light. And God saw the light, that "
          "it was good")


def client(address, token, seconds, start, out):
    with lensd.Client(address, token=token, model="kjv-gpt2", retries=8, backoff=0.05) as c:
        c.decode(PROMPT)  # connect and warm up
        while time.time() < start:
            time.sleep(0.001)
        calls = 0
        while time.time() < start + seconds:
            c.decode(PROMPT)
            calls += 1
        out.put(calls)


def measure(cluster, clients, seconds):
    address = f"127.0.0.1:{cluster.balancer_port}"
    out = multiprocessing.Queue()
    start = time.time() + 2.0
    procs = [multiprocessing.Process(target=client, args=(address, cluster.tokens["read"],
                                                          seconds, start, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    pg = pathlib.Path("/tmp") / f"lensd-bench-pg-{os.getpid()}"
    uri = subprocess.run(["bash", str(REPO / "tests" / "postgres" / "postgres.sh"), "start",
                          str(pg), str(30000 + os.getpid() % 20000)],
                         check=True, capture_output=True, text=True).stdout.strip()
    rates = {}
    try:
        for n in (1, 3):
            cluster = Cluster(uri, replicas=[(f"r{i + 1}", ["kjv-gpt2"]) for i in range(n)])
            try:
                rates[n] = measure(cluster, args.clients, args.seconds)
            finally:
                cluster.stop()
    finally:
        subprocess.run(["bash", str(REPO / "tests" / "postgres" / "postgres.sh"), "stop", str(pg)],
                       check=False)
    print(f"Decode calls/s through HAProxy, {args.clients} client processes, "
          f"{args.seconds:.0f} s each, {os.cpu_count()} CPUs:")
    print(f"  1 replica : {rates[1]:8.1f}")
    print(f"  3 replicas: {rates[3]:8.1f}  (x{rates[3] / rates[1]:.2f})")


if __name__ == "__main__":
    main()
