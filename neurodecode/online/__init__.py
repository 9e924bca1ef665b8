"""The live decoder: causal filtering, running covariances and a decision every step."""

from .decoder import Decision, StreamingDecoder, decode_stream
from .lsl import (LOOPBACK_CONFIG, LiveDecision, LSLDecoder, LSLError, LSLStreamLostError, LSLStreamNotFoundError,
                  read_session_log, use_loopback_config)

__all__ = ["Decision", "StreamingDecoder", "decode_stream",
           "LOOPBACK_CONFIG", "LiveDecision", "LSLDecoder", "LSLError", "LSLStreamLostError", "LSLStreamNotFoundError",
           "read_session_log", "use_loopback_config"]
