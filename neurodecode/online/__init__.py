"""Live decoding: the streaming decoder (causal filtering, running covariances, a decision every step) and LSL.

* :mod:`~neurodecode.online.decoder`: :class:`StreamingDecoder`, samples in, a decision every step;
* :mod:`~neurodecode.online.lsl`: :class:`LSLDecoder`, the live loop on an LSL stream;
* :mod:`~neurodecode.online.stream_io`: finding and opening LSL streams, the outlet, liblsl's
  loopback configuration;
* :mod:`~neurodecode.online.session_log`: the session log, written and read back;
* :mod:`~neurodecode.online.display`, :mod:`~neurodecode.online.live_scores`,
  :mod:`~neurodecode.online.probabilities`: the status line, running scores, class probabilities.
"""

from .decoder import Decision, StreamingDecoder, decode_stream
from .errors import LSLError, LSLStreamLostError, LSLStreamNotFoundError
from .lsl import LiveDecision, LSLDecoder
from .session_log import read_session_log
from .stream_io import LOOPBACK_CONFIG, use_loopback_config

__all__ = ["Decision", "StreamingDecoder", "decode_stream",
           "LOOPBACK_CONFIG", "LiveDecision", "LSLDecoder", "LSLError", "LSLStreamLostError", "LSLStreamNotFoundError",
           "read_session_log", "use_loopback_config"]
