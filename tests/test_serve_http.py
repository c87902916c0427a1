"""examples/http_server.py: a model served over HTTP through the Batcher, with
real requests on the loopback interface (Starlette and uvicorn: test-only)."""
import importlib.util
import json
import pathlib
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from problems import assert_close, require_peer
from test_serve import alone, make_model

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "http_server.py"


@pytest.fixture
def server():
    """(base URL, model) of the example's app run by uvicorn on a free port."""
    require_peer("starlette", "the HTTP example is a Starlette app")
    uvicorn = require_peer("uvicorn", "the HTTP example's server")
    if not EXAMPLE.exists():
        pytest.skip("examples/ is not beside the tests (an installed copy of them)")
    spec = importlib.util.spec_from_file_location("http_server", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = make_model("lstm", layers=2, dtype=np.float32)
    app = example.make_app(model, max_batch=8, max_queue=64)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    run = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=run.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not run.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", model, app
    finally:
        run.should_exit = True
        thread.join(20)
        sock.close()
    assert "closed" in repr(app.state.batcher)     # the app's shutdown closed it


def post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_requests_are_answered_as_the_model_answers_them(server):
    url, model, app = server
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, int(rng.integers(1, 30)))).astype(np.float32)
          for _ in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: post(url + "/predict", {"x": x.tolist()}), xs))
    for x, (status, body) in zip(xs, answers):
        assert status == 200
        want, want_final = alone(model, x)
        assert_close(np.array(body["outputs"], np.float32), want, rtol=1e-5, atol=1e-5)
        assert_close(np.array(body["final_state"]["c"], np.float32), want_final["c"],
                     rtol=1e-5, atol=1e-5)
    with urllib.request.urlopen(url + "/stats", timeout=30) as response:
        stats = json.loads(response.read())
    assert stats["requests"] == 40 and stats["failed"] == 0


def test_http_malformed_requests_get_400_with_the_models_message(server):
    url, model, app = server
    status, body = post(url + "/predict", {"x": np.zeros((4, 3)).tolist()})
    assert status == 400 and "its first dimension n_x must be 5" in body["error"]
    status, body = post(url + "/predict", b"not json")
    assert status == 400 and "the body must be JSON" in body["error"]
    status, body = post(url + "/predict", {"x": np.zeros((5, 3)).tolist(),
                                           "initial_state": {"a": [[0.0]]}})
    assert status == 400 and "initial_state['a'] has shape (1, 1)" in body["error"]
    status, body = post(url + "/predict", {"x": np.ones((5, 2)).tolist()})
    assert status == 200     # and the server goes on
