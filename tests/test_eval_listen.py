"""The A/B listening page: answers land in SQLite, results carry 95% intervals, and the page never shows which
system is which (checked over HTTP and in headless Chromium through Playwright)."""
import shutil
import socket
import sqlite3
import threading
import time

import numpy as np
import pytest

from tokenwave.audio import save_audio
from tokenwave.eval.listen import ListeningTest, make_app

SYSTEMS = ("sysalpha", "sysbeta")
ITEMS = ("clipone", "cliptwo", "clipthree")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def pairs(tmp_path):
    for k, system in enumerate(SYSTEMS):
        for j, item in enumerate(ITEMS):
            t = np.arange(12000) / 24000
            save_audio(tmp_path / "audio" / system / f"{item}.wav", (0.2 * np.sin(2 * np.pi * (300 + 100 * k + 50 * j) * t)).astype(np.float32), 24000)
    return tmp_path / "audio"


def secrets_in(text: str) -> list[str]:
    return [s for s in (*SYSTEMS, *ITEMS) if s in text]


def test_answers_are_stored_and_summarised(pairs, tmp_path):
    test = ListeningTest(pairs, tmp_path / "db.sqlite", seed=0)
    assert len(test.trials) == 3
    # a listener who always prefers sysbeta, whichever side it is on
    for _ in range(3):
        t = test.next_trial("l1")
        trial, sides = test._trial_tokens[t["trial"]]
        test.answer("l1", t["trial"], preferred="A" if sides[0] == "sysbeta" else "B")
    assert test.next_trial("l1")["done"]
    res = test.results()["preference"]["sysalpha vs sysbeta"]
    assert (res["wins"], res["losses"], res["preference_rate"]) == (0, 3, 0.0)
    assert res["ci95"][0] == 0.0 and 0.4 < res["ci95"][1] < 0.6
    # sides are randomised per trial, not fixed per system
    orders = {test._trial_tokens[test.next_trial(f"l{n}")["trial"]][1] for n in range(2, 12)}
    assert len(orders) == 2
    mos = ListeningTest(pairs, tmp_path / "mos.sqlite", mode="mos")
    for r in (5, 4, 4, 2, 1, 2):
        t = mos.next_trial("x")
        mos.answer("x", t["trial"], rating=r)
    res = mos.results()["mos"]
    assert {res["sysalpha"]["n"], res["sysbeta"]["n"]} == {3} and res["sysalpha"]["ci95"] is not None


def test_api_is_blinded(pairs, tmp_path):
    from fastapi.testclient import TestClient

    test = ListeningTest(pairs, tmp_path / "db.sqlite", seed=1)
    client = TestClient(make_app(test))
    page = client.get("/").text
    assert secrets_in(page) == []
    seen = []
    for _ in range(3):
        nxt = client.get("/api/next", params={"listener": "p"})
        assert secrets_in(nxt.text) == []
        body = nxt.json()
        for url in body["audio"]:
            audio = client.get(url)
            assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
            assert secrets_in(str(audio.headers)) == []
        seen.append(body["trial"])
        assert client.post("/api/answer", json={"listener": "p", "trial": body["trial"], "preferred": "same"}).json() == {"ok": True}
    assert client.get("/api/next", params={"listener": "p"}).json()["done"]
    assert client.post("/api/answer", json={"listener": "p", "trial": "forged", "preferred": "A"}).status_code == 400
    assert client.get("/results").status_code == 404 and client.get("/docs").status_code == 404
    assert len(set(seen)) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
def test_browser_session_saves_answers_blinded(pairs, tmp_path):
    uvicorn = pytest.importorskip("uvicorn")
    playwright = pytest.importorskip("playwright.sync_api")
    db = tmp_path / "db.sqlite"
    test = ListeningTest(pairs, db, seed=2)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(test), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page()
            responses = []
            page.on("response", lambda r: responses.append(r))
            page.goto(f"http://127.0.0.1:{port}/")
            for choice in ("A", "B", "same"):
                page.wait_for_selector("#audio-A")
                assert page.eval_on_selector("#audio-A", "a => a.src").split("/audio/")[1]
                assert secrets_in(page.content()) == []
                page.click(f"#choose-{choice}")
                page.wait_for_function(f"document.getElementById('progress').textContent.startsWith('Answered {'ABs'.index(choice[0]) + 1}')")
            page.wait_for_selector("#done")
            assert secrets_in(page.content()) == []
            for r in responses:
                if "json" in r.headers.get("content-type", "") or "html" in r.headers.get("content-type", ""):
                    assert secrets_in(r.text()) == []
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    rows = sqlite3.connect(db).execute("SELECT kind, system_a, system_b, preferred FROM answers").fetchall()
    assert len(rows) == 3 and all(r[0] == "ab" and r[1:3] == SYSTEMS for r in rows)
    assert sorted(r[3] for r in rows).count("same") == 1
    assert test.results()["listeners"] == 1
