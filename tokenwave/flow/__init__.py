"""Flow-matching generator on continuous codec latents: DiT velocity model, loss, ODE samplers, chunked streaming."""
from tokenwave.flow.config import FlowConfig
from tokenwave.flow.loss import flow_loss
from tokenwave.flow.model import FlowDiT
from tokenwave.flow.sample import FlowSampling, decode_long, sample, sample_long, stream_chunks

__all__ = ["FlowConfig", "FlowDiT", "FlowSampling", "decode_long", "flow_loss", "sample", "sample_long", "stream_chunks"]
