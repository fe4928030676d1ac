# Shell helpers the delivery and relay benchmarks share (sourced, not run).
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu_s() { python3 -c "import os,sys;f=open('/proc/$1/stat').read().rsplit(')',1)[1].split();print(f'{(int(f[11])+int(f[12]))/os.sysconf(\"SC_CLK_TCK\"):.1f}')"; }
metric() { curl -fs "http://127.0.0.1:$1/metrics" | awk -v m="tapfleet_manager_$2" '$1==m {print $2}'; }
# manifest_totals DIR: "files bytes" over every recording's manifest.json in DIR
manifest_totals() {
  python3 - "$1" <<'PY'
import json, os, sys
n = b = 0
for d in os.listdir(sys.argv[1]):
    m = json.load(open(os.path.join(sys.argv[1], d, "manifest.json")))
    for f in m["files"]:
        n += 1; b += f["size"]
print(n, b)
PY
}
# empty_pcap FILE: a pcap with no packets (the edge's capture source, so it only delivers)
empty_pcap() { python3 -c "import struct,sys;sys.stdout.buffer.write(struct.pack('<IHHiIII',0xa1b2c3d4,2,4,0,0,65535,1))" > "$1"; }
