"""Application factory. The server issue fills this in; for now: liveness only."""

from fastapi import FastAPI


def create_app() -> FastAPI:
    """Build the LogSense FastAPI application."""
    app = FastAPI(title="LogSense", version="0.1.0")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "ok"}

    return app
