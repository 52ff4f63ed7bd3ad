"""The streaming server: ``tokenwave serve`` (FastAPI + uvicorn).

- :mod:`~tokenwave.serve.engine`: continuous batching of token-LM decode steps across streams
- :mod:`~tokenwave.serve.process`: that engine in a child process (the server's default), over a socket pair
- :mod:`~tokenwave.serve.audio`: per-stream decoding, watermarking and wire formats
- :mod:`~tokenwave.serve.service`: tasks, engines, stream slots; requests -> audio chunks
- :mod:`~tokenwave.serve.app`: HTTP and WebSocket endpoints, limits, auth, rate limits, metrics, the player page
"""
