"""Video adapters: prompt one frame, propagate the object through a video (docs/video.md "Models").

The interface is :mod:`sambench.adapters.video.base`; the registry (:data:`VIDEO_BUILTIN`) and
:func:`build_video_adapter` live there too and are re-exported here.
"""

from __future__ import annotations

from sambench.adapters.video.base import (DIRECTIONS, VIDEO_BUILTIN, VIDEO_CAPABILITIES, FrameSource, ListFrames,
                                          VideoAdapter, build_video_adapter, is_video_model, video_adapter_name)

__all__ = ["DIRECTIONS", "VIDEO_BUILTIN", "VIDEO_CAPABILITIES", "FrameSource", "ListFrames", "VideoAdapter",
           "build_video_adapter", "is_video_model", "video_adapter_name"]
