#!/usr/bin/env bash
# A 1080p H.264 clip with AAC in 8 chunks: one uninterrupted `deband video` run; another killed
# with SIGKILL once 4 chunks are recorded, then rerun with the same command; the two outputs
# compared (frame count, pts, decoded pixels, audio packets). Then --jobs 1 against --jobs 2.
#   bash benchmarks/resume_after_kill.sh            (uses .venv/bin of this checkout)
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${DEBAND_BIN:-$repo/.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo/tests" && "$bin/python" -c "
from pathlib import Path
from clips import make_clip
make_clip(Path('$work/clip.mp4'), n=32, size=(1920, 1080), codec='libx264', audio=1, gop=4)
"
cd "$work" || exit 1
now() { date +%s.%N; }
chunks() { "$bin/python" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['chunks']))" "$1" 2>/dev/null || echo 0; }
t0=$(now); "$bin/deband" video clip.mp4 -o full.mkv --chunk 0.16 >/dev/null 2>&1; t1=$(now)
echo "uninterrupted: $(echo "$t1 - $t0" | bc) s"
"$bin/deband" video clip.mp4 -o kill.mkv --chunk 0.16 >/dev/null 2>&1 &
pid=$!
until m=$(ls .kill.mkv.deband-work-*/manifest.json 2>/dev/null | head -1) && [ -n "$m" ] && [ "$(chunks "$m")" -ge 4 ]; do
  kill -0 $pid 2>/dev/null || { echo "the run ended before 4 chunks were recorded"; exit 1; }
  sleep 0.1
done
t2=$(now); kill -9 $pid; wait $pid 2>/dev/null
echo "killed after $(echo "$t2 - $t1" | bc) s with $(chunks "$m") of 8 chunks recorded"
t3=$(now); "$bin/deband" video clip.mp4 -o kill.mkv --chunk 0.16 2>&1 | grep resuming; t4=$(now)
echo "rerun: $(echo "$t4 - $t3" | bc) s"
"$bin/python" - <<'PY'
import av
def read(path):
    with av.open(path) as c:
        frames = [(f.pts, f.to_ndarray()) for f in c.decode(video=0)]
    with av.open(path) as c:
        audio = [bytes(p) for p in c.demux(audio=0) if p.size]
    return frames, audio
(a, aa), (b, ab) = read("full.mkv"), read("kill.mkv")
print(f"frames {len(a)} / {len(b)}; pts equal {[f[0] for f in a] == [f[0] for f in b]}; "
      f"pixels equal {all((x[1] == y[1]).all() for x, y in zip(a, b))}; audio packets equal {aa == ab} ({len(aa)})")
PY
for j in 1 2; do
  t0=$(now); "$bin/deband" video clip.mp4 -o jobs$j.mkv --chunk 0.16 --jobs $j >/dev/null 2>&1; t1=$(now)
  echo "--jobs $j: $(echo "$t1 - $t0" | bc) s"
done
