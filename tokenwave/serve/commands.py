"""``tokenwave serve``: the streaming server, registered on the main CLI app."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port."),
    tts: Optional[Path] = typer.Option(None, help="TTS checkpoint folder (default: checkpoints/tts)."),
    music: Optional[Path] = typer.Option(None, help="Music checkpoint folder (default: checkpoints/music)."),
    sfx: Optional[Path] = typer.Option(None, help="Sound-effects checkpoint folder (default: checkpoints/sfx)."),
    codec: Optional[Path] = typer.Option(None, help="Codec checkpoint folder (default: checkpoints/codec)."),
    tasks: str = typer.Option("tts,music,sfx", help="Tasks to serve (comma-separated)."),
    max_streams: int = typer.Option(0, min=0, max=256, help="Concurrent streams (0 = what this machine sustains in "
                                    "real time: stored by benchmarks/serve.py, else measured at start-up)."),
    max_queue: int = typer.Option(32, min=0, max=4096, help="Requests that may wait for a stream (told their place); "
                                  "beyond: 503 / close 1013."),
    max_duration: float = typer.Option(300.0, min=0.5, max=300.0, help="Longest music/sfx request (s)."),
    decode_frames: int = typer.Option(0, min=0, max=64, help="Frames per decode chunk (0 = 2, 4, 8, then 16 after 1.6 s; "
                                      "bit-identical to the offline files; 1 = each step alone)."),
    api_key: Optional[str] = typer.Option(None, envvar="TOKENWAVE_API_KEY",
                                          help="Require this key (comma-separated for several; env TOKENWAVE_API_KEY)."),
    rate_limit: float = typer.Option(0.0, min=0.0, help="Requests a minute per key or client (0 = unlimited)."),
    consent_check: bool = typer.Option(True, "--consent-check/--no-consent-check",
                                       help="Refuse voice recordings that match no consented voice."),
    allow_origin: list[str] = typer.Option([], help="A web origin (https://host:port) whose pages may open "
                                           "WebSocket streams when no key is set (repeat for several; default: the "
                                           "server's own page only)."),
    threads: int = typer.Option(0, min=0, max=512, help="torch threads for generation (0 = half the CPU cores: the "
                                "engine and the decoder run at once, each with this many)."),
    precision: str = typer.Option("fp32", help="The TTS token LM's weights: fp32 (as trained) or int8 (faster, more "
                                  "streams; its Whisper CER beside fp32's in benchmarks/results/tts_precision.json)."),
    engine: str = typer.Option("process", help="Where each task's batch engine runs: process (a child process: the "
                               "decode loop keeps its own interpreter lock, more streams in real time) or thread."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve TTS, music and sound effects over HTTP and WebSocket, with a player page at /."""
    import torch  # lazy: keeps --help free of torch
    import uvicorn

    from tokenwave.codec import load_codec  # lazy: keeps --help free of torch
    from tokenwave.errors import InvalidArgumentError
    from tokenwave.serve.app import listen_socket, make_app  # lazy: keeps --help free of torch
    from tokenwave.serve.capacity import default_threads  # lazy: keeps --help free of torch
    from tokenwave.serve.service import ServeConfig, Service

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    bad = [t for t in names if t not in ("tts", "music", "sfx")]
    if bad or not names:
        raise InvalidArgumentError(f"unknown task(s) {', '.join(bad) or '(none)'}", "use --tasks tts,music,sfx")
    # set deliberately: torch's default (all cores, or OMP_NUM_THREADS) halved one stream's speed under contention
    n_threads = threads or default_threads()
    torch.set_num_threads(n_threads)
    typer.echo(f"torch threads: {n_threads}", err=True)
    folders = {"tts": tts, "music": music, "sfx": sfx}
    config = ServeConfig(max_streams=max_streams, max_queue=max_queue, max_duration=max_duration, decode_frames=decode_frames,
                         api_keys=tuple(k.strip() for k in (api_key or "").split(",") if k.strip()),
                         rate_limit=rate_limit, consent_check=consent_check, allowed_origins=tuple(allow_origin),
                         precision=precision, engine=engine)
    if not config.api_keys:
        loopback = host in ("127.0.0.1", "localhost", "::1")
        typer.secho("warning: serving without an API key: "
                    + ("any program on this machine can use the server" if loopback else
                       f"anyone who can reach {host}:{port} can use the server") + " (set --api-key or TOKENWAVE_API_KEY)",
                    fg="yellow", err=True)
    service = Service({t: folders[t] for t in names}, load_codec(codec), config)
    for task, why in service.missing.items():
        typer.secho(f"not serving {task}: {why}", fg="yellow", err=True)
    typer.echo(f"serving {', '.join(sorted(service.tasks))} on http://{host}:{port}/ (max {service.config.max_streams} "
               f"streams{', measured' if service.capacity else ''}; {config.max_queue} more may wait)")
    try:
        server = uvicorn.Server(uvicorn.Config(make_app(service), host=host, port=port, log_level=log_level,
                                               ws_max_size=config.max_body_bytes))
        server.run(sockets=[listen_socket(host, port)])  # small send buffers: backpressure engages early
    finally:
        service.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
