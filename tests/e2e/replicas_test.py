"""Several lensd servers sharing one PostgreSQL job store behind HAProxy, as deploy/haproxy sets
them up: three replicas of the demo model (the third also serves a copy under another name), the
balancer routing by the model a client names in metadata, the Python client retrying what is safe
to retry.

Checked: a job submitted through one replica is watched and cancelled through the others; calls
for the copy reach the only replica that serves it; a replica killed with SIGKILL in the middle of
a training job loses nothing: the job is taken over by another replica once its lease runs out and
ends with the same lens as an uninterrupted run, while a client calling through the balancer all
along sees no failure.

Needs LENSD_BINARY, LENSD_TEST_POSTGRES (the ctest postgres fixture), haproxy and psql."""
import json
import os
import threading
import time

import pytest

import lensd
from lensd.v1 import training_pb2
from replicas import Cluster, wait_for

POSTGRES = os.environ.get("LENSD_TEST_POSTGRES", "")

@pytest.fixture(scope="module")
def cluster():
    if not POSTGRES:
        pytest.skip("LENSD_TEST_POSTGRES names no PostgreSQL server (the test command's "
                    "postgres fixture sets it)")
    c = Cluster(POSTGRES)
    yield c
    c.stop()


def train(client, lens, steps):
    return client.train_lens(lens, "tokens.u16", num_steps=steps, seq_len=16,
                             tokens_per_step=32, checkpoint_every=5)


def test_a_job_submitted_to_one_replica_is_watched_and_cancelled_through_the_others(cluster):
    r1, r2, r3 = (cluster.client(r.address) for r in cluster.replicas)
    job = train(r1, "shared", 6)
    done = r2.watch(job.id, progress=False)
    assert done.state == training_pb2.JOB_STATE_SUCCEEDED, done.reason
    assert done.server in ("r1", "r2", "r3")
    assert r3.job(job.id).state == training_pb2.JOB_STATE_SUCCEEDED
    assert job.id in {j.id for j in r3.jobs()}
    # Every replica loads the lens the job wrote into the shared repository.
    for client in (r1, r2, r3):
        wait_for(lambda: "shared" in [lens.name for lens in client.get_model().lenses],
                 "the trained lens on every replica", timeout=10)
        assert client.decode("And God said", lens="shared", layers=[2]).lens == "shared"

    long = train(r1, "long", 1800)
    wait_for(lambda: r2.job(long.id).state == training_pb2.JOB_STATE_RUNNING, "the long job")
    asked = time.time()
    r3.cancel(long.id)
    final = r2.watch(long.id, progress=False)
    assert final.state == training_pb2.JOB_STATE_CANCELLED
    assert time.time() - asked < 3.0


def test_calls_naming_a_model_reach_the_replicas_that_serve_it(cluster):
    with cluster.client(role="read") as client:
        for _ in range(30):  # spread over r1..r3 without routing, 2 of 3 would fail
            assert client.decode("In the beginning", model="kjv-copy", layers=[1]).model == \
                "kjv-copy"
        assert {m.name for m in client.models()} >= {"kjv-gpt2", "kjv-copy"}


def test_a_replica_killed_mid_job_loses_nothing(cluster):
    balanced = cluster.client(retries=12, backoff=0.1)
    reference = balanced.watch(train(balanced, "uninterrupted", 240).id, progress=False)
    assert reference.state == training_pb2.JOB_STATE_SUCCEEDED, reference.reason

    calls, failures, stop = [0], [], threading.Event()

    def load():  # the job's own tenant: jobs are visible to their tenant
        with cluster.client(retries=12, backoff=0.1) as reader:
            while not stop.is_set():
                try:
                    reader.decode("And God said, Let there be light", layers=[3])
                    reader.job(job.id)
                    calls[0] += 1
                except lensd.LensdError as error:
                    failures.append(error)

    job = train(balanced, "interrupted", 240)
    threading.Thread(target=load, daemon=True).start()
    running = wait_for(lambda: (lambda j: j if j.step >= 20 else None)(balanced.job(job.id)),
                       "20 steps of the job")
    victim = cluster.replica(running.server)
    killed_at_step = running.step
    victim.kill()
    done = balanced.watch(job.id, progress=False)
    stop.set()
    time.sleep(0.5)
    assert done.state == training_pb2.JOB_STATE_SUCCEEDED, done.reason
    assert done.server != victim.name
    assert killed_at_step < done.num_steps
    assert json.loads(done.result_json)["resumed_from_step"] >= 5
    assert json.loads(done.result_json)["tokens"] == 240 * 32
    lenses = cluster.dir / "repo" / "kjv-gpt2" / "lenses"
    assert (lenses / "interrupted" / "params.pt").read_bytes() == \
        (lenses / "uninterrupted" / "params.pt").read_bytes()
    print(f"\nkilled {victim.name} at step {killed_at_step} of {done.num_steps}; the job ended on "
          f"{done.server} (resumed from step {json.loads(done.result_json)['resumed_from_step']}) "
          f"with the uninterrupted run's lens; {calls[0]} Decode+GetJob rounds through HAProxy "
          f"meanwhile, {len(failures)} failed")
    assert calls[0] > 10
    assert failures == [], failures[:3]
