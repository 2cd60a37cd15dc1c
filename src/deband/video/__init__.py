"""Video: PyAV decode -> restore in RGB batches -> 10-bit encode, other streams copied.

`deband_video(src, dst, debander, VideoOptions())` streams the first video stream of `src`
through `debander.restore_batch` a few frames at a time and writes `dst`:

* Colour (`colour`): each frame's Y'CbCr planes are read as numbers and converted with the
  stream's matrix and range (BT.709 for HD and BT.601 for SD when untagged).
* Residual re-encoding: the output planes are the input planes plus the model's change
  (restored - input) taken back to Y'CbCr. An identity model therefore gives the input
  code values exactly (x4 at 10 bits in limited range), out-of-gamut and super-white values
  survive, and chroma is not blurred by a resample round trip. Chroma is upsampled
  bilinearly with centred siting for the model; the change is box-averaged back.
* Output: yuv420p10le / yuv422p10le / yuv444p10le after the input's chroma family
  (8-bit with a static TPDF dither when bit_depth=8). When the frame size is not a multiple
  of the chroma subsampling (odd sizes in 4:2:0) the output falls back to 4:4:4.
* Streams (`streams`): video frames keep their pts (VFR included) in the input time base;
  audio, subtitle and data packets are remuxed byte for byte. `start`/`duration` seek and
  trim every stream to the same range and shift it to start at 0.
* Safety (`pipeline`): written to `.NAME.partial-XXXX.EXT` beside `dst` and renamed when
  complete; removed on any error or KeyboardInterrupt. A hard kill (SIGKILL) cannot clean
  up and leaves the hidden partial file, never a truncated file under the final name.

`analysis` streams frames one at a time (`analysis.iter_frames`, as the pipeline sees them),
decodes whole clips to tensors and measures flicker, for tests and benchmarks.
"""

from deband.video.analysis import read_video_rgb, temporal_flicker
from deband.video.colour import Colour, colour_of
from deband.video.options import CODECS, COMPARE_MODES, Restorer, VideoOptions, VideoReport
from deband.video.pipeline import check_paths, deband_video

__all__ = [
    "CODECS",
    "COMPARE_MODES",
    "Colour",
    "Restorer",
    "VideoOptions",
    "VideoReport",
    "check_paths",
    "colour_of",
    "deband_video",
    "read_video_rgb",
    "temporal_flicker",
]
