"""What packed Decode answers save a Python client (DecodeRequest.packed), one run, one machine:
the same all-layer Decode of the demo model (a long prompt, top-k, every default statistic) read
into a lensd.DecodeResult, answered as rows of cells and as packed arrays; prints the median
wall time of the call plus the reading, and the answer's size, for each.

    PYTHONPATH=build/python-client .venv/bin/python tests/bench/client_decode_bench.py \
        [--tokens 256] [--top_k 10] [--repeats 7]"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import lensd
from lensd import messages, results

REPO = pathlib.Path(__file__).resolve().parents[2]
VERSE = "And God said, Let there be light: and there was light. And God saw the light. "


def start_server(binary, workdir):
    port_file = pathlib.Path(workdir, "port.json")
    process = subprocess.Popen(
        [binary, f"--model_repository={REPO / 'deploy' / 'models'}", "--models=kjv-gpt2",
         "--address=127.0.0.1:0", "--metrics_address=", f"--port_file={port_file}",
         f"--state_dir={workdir}/state", "--log_requests=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not port_file.exists():
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError("lensd did not start")
        time.sleep(0.05)
    time.sleep(0.5)
    return process, f"127.0.0.1:{json.loads(port_file.read_text())['port']}"


def timed(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(REPO / "build" / "server" / "lensd"))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        process, address = start_server(args.binary, workdir)
        try:
            with lensd.Client(address, model="kjv-gpt2") as client:
                ids = [t.id for t in client.tokenize(VERSE * 40)][:args.tokens]

                def call(packed):
                    request = messages.decode("kjv-gpt2", ids, top_k=args.top_k, packed=packed)
                    response = client._unary(client._lens.Decode, request, "Decode")
                    return results.DecodeResult(response)

                call(True), call(False)  # warm up
                cells_s, cells = timed(lambda: call(False), args.repeats)
                packed_s, packed = timed(lambda: call(True), args.repeats)
                read_cells_s, _ = timed(lambda: results.DecodeResult(cells.response), args.repeats)
                read_packed_s, _ = timed(lambda: results.DecodeResult(packed.response),
                                         args.repeats)
        finally:
            process.terminate()
            process.wait(timeout=30)
    for name in ["top_ids", "top_probs", "top_tokens"] + cells.statistics:
        if not (getattr(cells, name) == getattr(packed, name)).all():
            sys.exit(f"{name}: packed and cells differ")
    grid = f"{len(cells.layers)} rows x {len(cells.positions)} positions x top-{args.top_k}"
    print(f"Decode of the demo model, {grid}, read into DecodeResult "
          f"(median of {args.repeats}):")
    print("          call+read   read only   answer")
    for name, total, read, result in (("cells", cells_s, read_cells_s, cells),
                                      ("packed", packed_s, read_packed_s, packed)):
        print(f"  {name:6s} {total * 1e3:8.1f} ms {read * 1e3:8.1f} ms "
              f"{result.response.ByteSize() / 2**20:7.2f} MiB")
    print(f"  packed: call+read x{cells_s / packed_s:.1f}, read x{read_cells_s / read_packed_s:.1f} "
          f"faster; the arrays equal")


if __name__ == "__main__":
    main()
