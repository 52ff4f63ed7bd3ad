"""The token-autoregressive generator: a decoder-only transformer over codec codes (:mod:`tokenwave.lm.model`), its
sampling (:mod:`tokenwave.lm.sampling`), the offline and streaming generation loops (:mod:`tokenwave.lm.generate`)
and a local Hugging Face MusicGen backend (:mod:`tokenwave.lm.hf_musicgen`)."""
