"""A/B listening test: a local web page (FastAPI + uvicorn) that plays blinded, randomised pairs or single items and
stores preferences and 1-5 MOS ratings in SQLite; :meth:`ListeningTest.results` gives preference rates (Wilson
95% intervals) and MOS (t 95% intervals).

Layout: ``PAIRS/<system>/<item>.wav``. Items found under two or more systems become A/B trials (every pair of
systems), and with ``mode="mos"`` (or a single system) every file becomes a rating trial. Blinding: the page and
its API only ever see opaque random tokens for trials and audio; which side is which system lives on the server
and in the database, and results are read with ``tokenwave listen --summary``, never over HTTP.
"""
from __future__ import annotations

import itertools
import math
import os
import secrets
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import t

from tokenwave.audio import AUDIO_EXTENSIONS
from tokenwave.errors import DatasetError, InvalidArgumentError

SCHEMA = """CREATE TABLE IF NOT EXISTS answers (
  id INTEGER PRIMARY KEY, listener TEXT NOT NULL, trial TEXT NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL,
  system_a TEXT NOT NULL, system_b TEXT, preferred TEXT, rating INTEGER, time REAL NOT NULL,
  UNIQUE (listener, trial))"""


@dataclass(frozen=True)
class Trial:
    key: str                 # stable: "ab:<item>:<sys1>|<sys2>" or "mos:<item>:<sys>" (server side only)
    kind: str                # "ab" | "mos"
    item: str
    systems: tuple[str, ...]  # one (mos) or two (ab), in canonical (sorted) order


class ListeningTest:
    def __init__(self, pairs: str | os.PathLike, db: str | os.PathLike, seed: int = 0, mode: str | None = None) -> None:
        self.root, self.seed = Path(pairs), seed
        if not self.root.is_dir():
            raise DatasetError(f"no folder {self.root}", "pass --pairs DIR holding DIR/<system>/<item>.wav")
        self.files: dict[tuple[str, str], Path] = {}
        for sys_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for f in sorted(sys_dir.iterdir()):
                if f.suffix.lower() in AUDIO_EXTENSIONS:
                    self.files[(sys_dir.name, f.stem)] = f
        systems = sorted({s for s, _ in self.files})
        if not systems:
            raise DatasetError(f"no audio under {self.root}/<system>/", "put each system's files in its own sub-folder")
        mode = mode or ("ab" if len(systems) > 1 else "mos")
        if mode not in ("ab", "mos"):
            raise InvalidArgumentError(f"unknown mode {mode!r}", "use ab or mos")
        items = sorted({i for _, i in self.files})
        if mode == "ab":
            self.trials = [Trial(f"ab:{i}:{a}|{b}", "ab", i, (a, b)) for i in items
                           for a, b in itertools.combinations(systems, 2) if (a, i) in self.files and (b, i) in self.files]
            if not self.trials:
                raise DatasetError("no item is present under two systems", "name the same item alike in each system folder")
        else:
            self.trials = [Trial(f"mos:{i}:{s}", "mos", i, (s,)) for s in systems for i in items if (s, i) in self.files]
        self.db_path = Path(db)
        self._lock = threading.Lock()
        with self._db() as con:
            con.execute(SCHEMA)
        # Opaque tokens, new for each server run: token -> (trial, A/B order) and token -> audio file.
        self._trial_tokens: dict[str, tuple[Trial, tuple[str, ...]]] = {}
        self._audio_tokens: dict[str, Path] = {}

    def _db(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=10)
        con.isolation_level = None  # autocommit; each answer is one INSERT
        return con

    def _order(self, listener: str) -> list[Trial]:
        """The listener's own random trial order (seeded by the test seed and the listener id)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(listener.encode())])
        return [self.trials[i] for i in rng.permutation(len(self.trials))]

    def next_trial(self, listener: str) -> dict:
        """The next unanswered trial for ``listener`` as the page sees it: opaque tokens only."""
        with self._db() as con:
            done = {r[0] for r in con.execute("SELECT trial FROM answers WHERE listener = ?", (listener,))}
        todo = [t for t in self._order(listener) if t.key not in done]
        if not todo:
            return {"done": True, "answered": len(done), "total": len(self.trials)}
        trial = todo[0]
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{listener}/{trial.key}".encode())])
        sides = tuple(trial.systems[i] for i in rng.permutation(len(trial.systems)))
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._trial_tokens[token] = (trial, sides)
            audio = []
            for s in sides:
                a = secrets.token_urlsafe(12)
                self._audio_tokens[a] = self.files[(s, trial.item)]
                audio.append(f"/audio/{a}")
        return {"done": False, "trial": token, "kind": trial.kind, "audio": audio,
                "answered": len(done), "total": len(self.trials)}

    def answer(self, listener: str, trial_token: str, preferred: str | None = None, rating: int | None = None) -> None:
        """Store one answer: ``preferred`` "A", "B" or "same" for an A/B trial, ``rating`` 1-5 for a MOS trial."""
        with self._lock:
            if trial_token not in self._trial_tokens:
                raise InvalidArgumentError("unknown or expired trial", "reload the page")
            trial, sides = self._trial_tokens[trial_token]
        if trial.kind == "ab":
            if preferred not in ("A", "B", "same"):
                raise InvalidArgumentError(f"preference {preferred!r} is not A, B or same", "choose A, B or same")
            winner = None if preferred == "same" else sides[0 if preferred == "A" else 1]
            row = (listener, trial.key, "ab", trial.item, trial.systems[0], trial.systems[1], winner or "same", None)
        else:
            if rating not in (1, 2, 3, 4, 5):
                raise InvalidArgumentError(f"rating {rating!r} is not 1-5", "rate from 1 (bad) to 5 (excellent)")
            row = (listener, trial.key, "mos", trial.item, trial.systems[0], None, None, int(rating))
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO answers (listener, trial, kind, item, system_a, system_b, preferred,"
                        " rating, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, time.time()))
        with self._lock:
            self._trial_tokens.pop(trial_token, None)

    def audio_file(self, token: str) -> Path | None:
        with self._lock:
            return self._audio_tokens.get(token)

    def results(self) -> dict:
        """Preference per system pair (wins over decided answers, Wilson 95% CI; ties counted apart) and MOS per
        system (mean, t 95% CI), from every answer in the database."""
        with self._db() as con:
            rows = con.execute("SELECT kind, system_a, system_b, preferred, rating, listener FROM answers").fetchall()
        prefs: dict[str, dict] = {}
        for kind, a, b, pref, _, _ in rows:
            if kind != "ab":
                continue
            p = prefs.setdefault(f"{a} vs {b}", {"system": a, "other": b, "wins": 0, "losses": 0, "ties": 0})
            p["ties" if pref == "same" else "wins" if pref == a else "losses"] += 1
        for p in prefs.values():
            n = p["wins"] + p["losses"]
            p["preference_rate"] = p["wins"] / n if n else None
            p["ci95"] = wilson_interval(p["wins"], n) if n else None
        mos: dict[str, dict] = {}
        for s in sorted({r[1] for r in rows if r[0] == "mos"}):
            mos[s] = mean_interval([r[4] for r in rows if r[0] == "mos" and r[1] == s])
        return {"answers": len(rows), "listeners": len({r[5] for r in rows}), "trials": len(self.trials),
                "preference": prefs, "mos": mos}


def wilson_interval(k: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson score 95% interval of a proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def mean_interval(values: list[float]) -> dict:
    """Mean with a Student-t 95% interval (``None`` bounds for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return {"mean": m, "n": len(x), "ci95": None}
    half = float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": m, "n": len(x), "ci95": [m - half, m + half]}


def _answer_model():
    from pydantic import BaseModel  # lazy: pydantic and fastapi, optional backends (the serve extra), for the page

    class Answer(BaseModel):
        listener: str
        trial: str
        preferred: str | None = None
        rating: int | None = None

    return Answer


def make_app(test: ListeningTest):
    # lazy: fastapi, an optional backend (the serve extra), only to serve the page
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    Answer = _answer_model()
    app = FastAPI(title="tokenwave listening test", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/next")
    def next_trial(listener: str) -> dict:
        return test.next_trial(listener)

    def answer(a) -> dict:
        try:
            test.answer(a.listener, a.trial, a.preferred, a.rating)
        except InvalidArgumentError as err:
            raise HTTPException(400, err.one_line()) from err
        return {"ok": True}

    answer.__annotations__["a"] = Answer  # a local class: FastAPI must see the type itself, not its name
    app.post("/api/answer")(answer)

    @app.get("/audio/{token}")
    def audio(token: str):
        path = test.audio_file(token)
        if path is None:
            raise HTTPException(404, "unknown audio")
        return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    return app


def serve(test: ListeningTest, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn  # lazy: pydantic/fastapi/uvicorn, optional backends (the serve extra), only to serve the page

    uvicorn.run(make_app(test), host=host, port=port, log_level="warning")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Listening test</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
 .side { display: inline-block; margin: 0.5rem 1rem 1rem 0; } button { font-size: 1rem; margin: 0.2rem; padding: 0.4rem 0.9rem; }
 #progress { color: #666; }
</style></head>
<body>
<h1>Listening test</h1>
<p id="progress"></p>
<div id="trial"></div>
<script>
let listener = localStorage.getItem("tw-listener");
if (!listener) { listener = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2); localStorage.setItem("tw-listener", listener); }
let current = null;
function el(tag, attrs, text) { const e = document.createElement(tag); Object.assign(e, attrs || {}); if (text) e.textContent = text; return e; }
async function load() {
  const r = await fetch("/api/next?listener=" + encodeURIComponent(listener));
  current = await r.json();
  const box = document.getElementById("trial"); box.innerHTML = "";
  document.getElementById("progress").textContent = "Answered " + current.answered + " of " + current.total;
  if (current.done) { box.appendChild(el("p", {id: "done"}, "All done - thank you!")); return; }
  if (current.kind === "ab") {
    box.appendChild(el("p", {}, "Listen to both. Which sounds better?"));
    ["A", "B"].forEach((name, i) => {
      const d = el("div", {className: "side"}); d.appendChild(el("strong", {}, name + " "));
      d.appendChild(el("audio", {controls: true, src: current.audio[i], id: "audio-" + name})); box.appendChild(d);
    });
    const row = el("div");
    [["A", "A is better"], ["same", "No preference"], ["B", "B is better"]].forEach(([v, label]) => {
      row.appendChild(el("button", {id: "choose-" + v, onclick: () => send({preferred: v})}, label)); });
    box.appendChild(row);
  } else {
    box.appendChild(el("p", {}, "How good is this audio? 1 = bad, 5 = excellent."));
    box.appendChild(el("audio", {controls: true, src: current.audio[0], id: "audio-item"}));
    const row = el("div");
    [1, 2, 3, 4, 5].forEach(v => row.appendChild(el("button", {id: "rate-" + v, onclick: () => send({rating: v})}, String(v))));
    box.appendChild(row);
  }
}
async function send(answer) {
  const r = await fetch("/api/answer", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(Object.assign({listener: listener, trial: current.trial}, answer))});
  if (!r.ok) { alert("could not save the answer: " + (await r.text())); }
  load();
}
load();
</script>
</body></html>
"""
