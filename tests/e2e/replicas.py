"""Several lensd replicas sharing one PostgreSQL job store behind HAProxy, on loopback: what
tests/e2e/replicas_test.py and tests/bench/replicas_bench.py start. Needs LENSD_BINARY (default
build/server/lensd), a PostgreSQL URI, haproxy and psql."""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))
from conftest import make_token  # noqa: E402

import lensd  # noqa: E402

BINARY = os.environ.get("LENSD_BINARY", str(REPO / "build" / "server" / "lensd"))
LEASE_SECONDS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what, timeout=60.0, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Replica:
    def __init__(self, cluster, name, models):
        self.name = name
        self.models = models
        self.dir = cluster.dir / name
        self.dir.mkdir()
        self.log = open(self.dir / "lensd.log", "w")
        self.process = subprocess.Popen(
            [BINARY, f"--model_repository={cluster.dir}/repo", f"--models={','.join(models)}",
             f"--tokens_file={cluster.dir}/tokens.txt", "--address=127.0.0.1:0",
             "--metrics_address=127.0.0.1:0", f"--port_file={self.dir}/port.json",
             f"--state_dir={self.dir}/state", f"--data_root={cluster.dir}/data",
             f"--job_store={cluster.postgres}", f"--replica_id={name}",
             f"--checkpoint_dir={cluster.dir}/checkpoints",
             f"--job_lease_seconds={LEASE_SECONDS}", "--log_requests=false",
             "--intra_op_threads=1"],
            stderr=self.log)
        wait_for(lambda: (self.dir / "port.json").exists() and
                 "serving" in (self.dir / "lensd.log").read_text() or self.dead(),
                 f"{name} to serve")
        assert not self.dead(), (self.dir / "lensd.log").read_text()
        self.port = json.loads((self.dir / "port.json").read_text())["port"]
        self.address = f"127.0.0.1:{self.port}"

    def dead(self):
        return self.process.poll() is not None

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if not self.dead():
            self.process.terminate()
            self.process.wait(timeout=60)
        self.log.close()


# The test's replicas: three of the demo model, the third also serving a copy of it.
DEFAULT_REPLICAS = (("r1", ["kjv-gpt2"]), ("r2", ["kjv-gpt2"]), ("r3", ["kjv-gpt2", "kjv-copy"]))


class Cluster:
    def __init__(self, postgres, replicas=DEFAULT_REPLICAS):
        self.postgres = postgres
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="lensd-replicas-"))
        self.tokens = {}
        lines = []
        for tenant, role in (("admin", "admin"), ("alice", "train"), ("reader", "read")):
            self.tokens[role], line = make_token(tenant, role)
            lines.append(line)
        (self.dir / "tokens.txt").write_text("\n".join(lines) + "\n")
        demo = REPO / "deploy" / "models" / "kjv-gpt2"
        for name in ("kjv-gpt2", "kjv-copy"):
            model = self.dir / "repo" / name
            (model / "lenses").mkdir(parents=True)
            for f in demo.iterdir():
                if f.name not in ("lenses", "saes"):
                    (model / f.name).symlink_to(f)
        (self.dir / "data").mkdir()
        rng = np.random.default_rng(5)
        rng.integers(0, 4096, 60000, dtype=np.uint16).tofile(self.dir / "data" / "tokens.u16")
        (self.dir / "checkpoints").mkdir()
        subprocess.run(["psql", "-q", postgres, "-c", "DROP TABLE IF EXISTS lensd_jobs"],
                       check=True, capture_output=True)
        self.replicas = [Replica(self, name, models) for name, models in replicas]
        self.balancer_port = free_port()
        self.balancer = self.start_haproxy()

    def start_haproxy(self):
        """deploy/haproxy/haproxy.cfg with this cluster's ports and map."""
        config = (REPO / "deploy" / "haproxy" / "haproxy.cfg").read_text()
        config = config.replace("127.0.0.1:50051", f"127.0.0.1:{self.balancer_port}")
        lines = [line for line in config.splitlines(keepends=True)
                 if "127.0.0.1:5006" not in line]  # the example's servers
        config = "".join(lines)
        for backend in ("lensd_all", "lensd_kjv"):
            servers = "".join(f"  server {r.name} {r.address} proto h2 check inter 500ms fall 2 "
                              "rise 2\n" for r in self.replicas
                              if backend == "lensd_all" or "kjv-gpt2" in r.models)
            config = config.replace(f"backend {backend}\n  balance roundrobin\n",
                                    f"backend {backend}\n  balance roundrobin\n{servers}")
        copies = [r for r in self.replicas if "kjv-copy" in r.models]
        models = self.dir / "models.map"
        models.write_text("kjv-gpt2 lensd_kjv\n" + ("kjv-copy lensd_copy\n" if copies else ""))
        config = config.replace("deploy/haproxy/models.map", str(models))
        if copies:
            config += "\nbackend lensd_copy\n" + "".join(
                f"  server {r.name} {r.address} proto h2 check inter 500ms fall 2\n"
                for r in copies)
        (self.dir / "haproxy.cfg").write_text(config)
        log = open(self.dir / "haproxy.log", "w")
        process = subprocess.Popen(["haproxy", "-db", "-f", str(self.dir / "haproxy.cfg")],
                                   stdout=log, stderr=log)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", self.balancer_port)) == 0,
                 "haproxy to listen")
        return process

    def client(self, address=None, role="train", **options):
        return lensd.Client(address or f"127.0.0.1:{self.balancer_port}",
                            token=self.tokens[role], model="kjv-gpt2", **options)

    def replica(self, name):
        return next(r for r in self.replicas if r.name == name)

    def stop(self):
        self.balancer.terminate()
        self.balancer.wait(timeout=30)
        for replica in self.replicas:
            replica.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


