"""A live lensd for the client tests: the real binary (LENSD_BINARY, default
<repo>/build/server/lensd) on a free loopback port with auth on, a private repository with the
demo model and its tuned lens, a data root, and tokens of each role."""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
BINARY = os.environ.get("LENSD_BINARY", str(REPO / "build" / "server" / "lensd"))


def make_token(tenant, role):
    out = subprocess.run([BINARY, "token", f"--tenant={tenant}", f"--role={role}"], check=True,
                         capture_output=True, text=True).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return fields["token"], fields["tokens file line"]


class Server:
    """lensd started for a test session; stopped (SIGTERM) at the end."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="lensd-py-")
        self.tokens = {}
        lines = []
        for tenant, role in (("admin", "admin"), ("alice", "train"), ("reader", "read")):
            self.tokens[role], line = make_token(tenant, role)
            lines.append(line)
        pathlib.Path(self.dir, "tokens.txt").write_text("\n".join(lines) + "\n")
        # A private repository (lenses the tests train land there): the demo model's files and
        # its tuned lens linked.
        demo = REPO / "deploy" / "models" / "kjv-gpt2"
        model = pathlib.Path(self.dir, "repo", "kjv-gpt2")
        (model / "lenses").mkdir(parents=True)
        for f in demo.iterdir():
            if f.name != "lenses":
                (model / f.name).symlink_to(f)
        (model / "lenses" / "tuned").symlink_to(demo / "lenses" / "tuned")
        data = pathlib.Path(self.dir, "data")
        data.mkdir()
        verse = "And God said, Let there be light: and there was light. "
        (data / "verses.jsonl").write_text(
            "".join(json.dumps({"text": verse * 8}) + "\n" for _ in range(20)))
        self.log = open(pathlib.Path(self.dir, "lensd.log"), "w")
        self.process = subprocess.Popen(
            [BINARY, f"--model_repository={self.dir}/repo", "--models=kjv-gpt2",
             "--lenses=kjv-gpt2/tuned", f"--tokens_file={self.dir}/tokens.txt",
             "--address=127.0.0.1:0", "--metrics_address=127.0.0.1:0", f"--port_file={self.dir}/port.json",
             f"--state_dir={self.dir}/state", f"--data_root={data}", "--log_requests=false",
             *flags], stderr=self.log)
        port_file = pathlib.Path(self.dir, "port.json")
        for _ in range(600):
            if port_file.exists() and port_file.stat().st_size > 0 and \
                    "serving" in pathlib.Path(self.dir, "lensd.log").read_text():
                break
            if self.process.poll() is not None:
                raise RuntimeError(pathlib.Path(self.dir, "lensd.log").read_text())
            time.sleep(0.1)
        self.address = f"127.0.0.1:{json.loads(port_file.read_text())['port']}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    import lensd
    with lensd.Client(server.address, token=server.tokens["admin"]) as c:
        yield c
