"""Trained generators as folders: one reader and one writer per folder format, beside each other.

- :mod:`tokenwave.models.tts`: a TTS model folder (:class:`~tokenwave.models.tts.TTSFolder`: the network, its
  phoneme vocabularies and built-in voices).
- :mod:`tokenwave.models.tagged`: a music / sound-effects generator folder (:class:`~tokenwave.models.tagged.Generator`:
  a token LM or flow network with its tag and melody conditioners).
- :mod:`tokenwave.models.folder`: what the formats share: ``generators.json``, a fine-tuned ``decoder/``, and the
  codec each model was trained on, by content hash (``codec_hash``).

Training (:mod:`tokenwave.train`) writes through these writers; tasks and the server load through these readers.
"""
