#!/bin/bash
# Captures a real loopback session (session.py MODE) in a namespace of its
# own with `socktrace trace --record`, keeping that namespace's records.
#   sudo tests/data/capture.sh golden tests/data/loopback.rec
#   sudo tests/data/capture.sh churn benches/data/churn.rec
# Needs a release build (cargo build --release -p socktrace), iptables.
set -euo pipefail
NS=capture$$
RAW=$(mktemp)
BIN=${SOCKTRACE_BIN:-$(dirname "$0")/../../../target/release/socktrace}
ip netns add $NS; trap 'ip netns del $NS; rm -f "$RAW" "$RAW.err"; kill $TRACE 2>/dev/null || true' EXIT
ip -n $NS link set lo up
INODE=$(stat -L -c %i /run/netns/$NS)
$BIN trace --json --netns $INODE --record "$RAW" > /dev/null 2> "$RAW.err" &
TRACE=$!
for i in $(seq 50); do grep -q ready "$RAW.err" && break; sleep 0.1; done
nsenter --net=/run/netns/$NS python3 "$(dirname "$0")/session.py" "$1"
sleep 0.3
kill -INT $TRACE
wait $TRACE || true
python3 - "$INODE" "$2" "$RAW" <<'PY'
import sys, struct
# Format: src/recording/format.rs (frames: kind, 3 zero bytes, length).
inode=int(sys.argv[1]); out=sys.argv[2]
data=open(sys.argv[3],'rb').read()
head, at, kept, records = data[:16], 16, [], 0
while at + 8 <= len(data):
    kind, length = struct.unpack_from('<B3xI', data, at)
    frame = data[at:at + 8 + length]
    at += 8 + length
    if kind == 1:
        records += 1
        if struct.unpack_from('<I', frame, 8 + 24)[0] != inode:
            continue
    kept.append(frame)
open(out,'wb').write(head+b''.join(kept))
print(records, "records,", sum(f[0] == 1 for f in kept), "kept for netns", inode)
PY
