"""What every trained generator folder shares: its kind (``config.json``), the record of its generators
(``generators.json``), an optional decoder fine-tuned for its output (``decoder/``), and the codec it was trained
on, named by content hash (``codec_hash`` in ``config.json``, :meth:`tokenwave.codec.Codec.content_hash`).

The writer records the hash of the codec that made the training data (recorded in ``tokens.json`` /
``latents.json`` when it was made, else computed from the codec folder the data names); the reader refuses a
codec whose hash differs. A folder written before the hash was recorded names its codec by path only
(``tokens.codec`` / ``latents.codec``): one trained on the shipped codec (``checkpoints/codec``) is checked against
it; one trained on another codec, or naming none, is not checked.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from tokenwave.checkpoint import CONFIG, WEIGHTS, CheckpointError
from tokenwave.codec import load_codec
from tokenwave.codec.decoders import load_decoder
from tokenwave.errors import TokenwaveError
from tokenwave.paths import checkpoints_dir, default_checkpoint

CODEC_HASH = "codec_hash"  # config.json: the content hash of the codec whose codes / latents the model was trained on
SHIPPED_CODEC = "checkpoints/codec"  # how a folder names the shipped codec (tokenwave.paths.shown_path)
# a task folder's record of its generators: the default one and the sampling controls measured best for each
# (benchmarks/tasks.py --choose, benchmarks/sampling.py --apply)
GENERATORS_FILE = "generators.json"
# a model folder's optional subfolder: a codec decoder fine-tuned for that model's output (`tokenwave train decoder`)
DECODER = "decoder"


class MissingModelError(TokenwaveError):
    """A task's checkpoint folder is missing or is not that task's model."""


class CodecMismatchError(CheckpointError):
    """A generator loaded with a codec other than the one whose codes it was trained on."""


def checkpoint_kind(folder: str | Path) -> str:
    """A checkpoint folder -> the ``kind`` its ``config.json`` names ("lm", "flow", "tts", ...)."""
    path = Path(folder) / CONFIG
    if not path.exists():
        raise CheckpointError(f"no model in {folder} (needs {WEIGHTS} and {CONFIG})",
                              "pass a folder written by `tokenwave train` or a shipped one in checkpoints/")
    return json.loads(path.read_text()).get("kind", "")


def read_generators(folder: str | Path) -> dict:
    """A task folder -> its ``generators.json`` ({} when it has none)."""
    path = Path(folder) / GENERATORS_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})",
                              "restore it from the repository, or delete it to use the built-in defaults") from e


def folder_decoder(folder: str | Path, codec, n_q: int):
    """``codec`` decoding with the decoder in ``folder/decoder`` (checked for ``n_q`` codebooks, 0: latents), or
    None when the model folder has none."""
    if not (Path(folder) / DECODER / CONFIG).exists():
        return None
    return load_decoder(Path(folder) / DECODER, codec, n_q=n_q)


def load_weights(folder: str | Path, module, state: dict, what: str = WEIGHTS) -> None:
    """``state`` into ``module``; weights that do not fit the module its config describes (an edited or damaged
    folder) raise a :class:`CheckpointError` naming the first mismatch."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        detail = next((ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()), str(err))
        raise CheckpointError(f"{Path(folder) / what} does not fit {Path(folder) / CONFIG}: {detail}",
                              "restore the folder, or retrain: its weights and config were written apart") from err


def source_codec(raw: dict) -> str | None:
    """A generator's ``config.json`` -> the codec its training data names (``tokens.codec`` or ``latents.codec``, a
    path as recorded), or None."""
    for key in ("tokens", "latents"):
        name = (raw.get(key) or {}).get("codec")
        if name:
            return str(name)
    return None


def _codec_folder(name: str) -> Path:
    """A codec as a checkpoint records it (``checkpoints/...`` for the shipped ones, else a path) -> its folder."""
    return checkpoints_dir() / name.split("/", 1)[1] if name.startswith("checkpoints/") else Path(name)


@functools.lru_cache(maxsize=4)
def _folder_hash(folder: str, stamp: float) -> str:
    return load_codec(folder).content_hash()


def codec_folder_hash(folder: str | Path) -> str:
    """A codec folder -> its :meth:`content_hash` (remembered while the folder's weights are unchanged)."""
    folder = Path(folder).resolve()
    return _folder_hash(str(folder), max((f.stat().st_mtime for f in folder.iterdir()), default=0.0))


def data_codec_hash(info: dict) -> str | None:
    """A tokens or latents folder's info (``tokens.json`` / ``latents.json``) -> the content hash of the codec that
    made it: the one recorded when it was made, else that of the codec folder it names when that folder is there,
    else None (unknown: the model folder then records none)."""
    if info.get(CODEC_HASH):
        return str(info[CODEC_HASH])
    name = info.get("codec")
    folder = _codec_folder(str(name)) if name else None
    return codec_folder_hash(folder) if folder is not None and (folder / CONFIG).exists() else None


def trained_codec_hash(raw: dict) -> str | None:
    """A generator's ``config.json`` -> the content hash of the codec it was trained on: the recorded one; for a
    folder written before it was recorded whose data came from the shipped codec, the shipped codec's; else None."""
    if raw.get(CODEC_HASH):
        return str(raw[CODEC_HASH])
    if source_codec(raw) == SHIPPED_CODEC and (default_checkpoint("codec") / CONFIG).exists():
        return codec_folder_hash(default_checkpoint("codec"))
    return None


def check_codec(folder: str | Path, raw: dict, codec) -> None:
    """Refuse ``codec`` for the generator in ``folder`` (its ``config.json`` ``raw``) when it is not the codec the
    generator was trained on (a :class:`CodecMismatchError` naming both and the fix); a fine-tuned decoder keeps
    the codec's hash, so a codec with one passes."""
    want = trained_codec_hash(raw)
    if want is None:
        return
    have = codec.content_hash()
    if have != want:
        named = source_codec(raw)
        raise CodecMismatchError(
            f"{folder} was trained on the codes of codec {want}{f' ({named})' if named else ''}, but the codec given "
            f"is {have}",
            f"pass the codec it was trained on{f' ({named})' if named else ''}, or retrain with this codec: "
            "`tokenwave codec tokenize --model CODEC` (or `codec latents`), then `tokenwave train ...` on its output")


__all__ = ["CODEC_HASH", "DECODER", "GENERATORS_FILE", "SHIPPED_CODEC", "CodecMismatchError", "MissingModelError",
           "check_codec", "checkpoint_kind", "codec_folder_hash", "data_codec_hash", "folder_decoder",
           "load_weights", "read_generators", "source_codec", "trained_codec_hash"]
