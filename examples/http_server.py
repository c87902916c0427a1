"""Serve a cyrnn model over HTTP, requests coalesced by cyrnn.serve.Batcher.

    pip install starlette uvicorn
    python examples/http_server.py model.npz [--host 127.0.0.1] [--port 8000]

model.npz: a model written by `Model.save` (e.g. `models.from_torch(net).save(...)`).
POST /predict with JSON {"x": [[...], ...]} — one sequence, n_x rows of T values —
and optionally {"initial_state": {"a": [[...]]}} answers {"outputs": D·n_a (or n_y)
rows of T values, "final_state": {"a": ...}}; a malformed request gets 400 with
the model's message, a full queue 503. GET /stats returns the batcher's stats().
"""
import argparse
import contextlib

import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cyrnn import models
from cyrnn.serve import Batcher, BatcherFull


def make_app(model, **batcher_options):
    """A Starlette app serving `model` through one Batcher (closed at shutdown)."""
    batcher = Batcher(model, **batcher_options)

    async def predict(request):
        try:
            body = await request.json()
            x = np.asarray(body["x"], dtype=model.dtype)
            state = body.get("initial_state")
            if state is not None:
                state = {k: np.asarray(v, dtype=model.dtype) for k, v in state.items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return JSONResponse({"error": f"the body must be JSON with numbers under 'x': "
                                          f"{type(exc).__name__}: {exc}"}, status_code=400)
        try:
            outputs, final = await batcher.asubmit(x, state, timeout=1.0)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except BatcherFull as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"outputs": outputs.tolist(),
                             "final_state": {k: v.tolist() for k, v in final.items()}})

    async def stats(request):
        return JSONResponse(batcher.stats())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                            Route("/stats", stats)], lifespan=lifespan)
    app.state.batcher = batcher
    return app


def main(argv=None):
    import uvicorn
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model file written by Model.save")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(make_app(models.load(args.model)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
