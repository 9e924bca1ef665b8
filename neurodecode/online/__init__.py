"""The live decoder: causal filtering, running covariances and a decision every step."""

from .decoder import Decision, StreamingDecoder, decode_stream

__all__ = ["Decision", "StreamingDecoder", "decode_stream"]
