# A loopback session covering what the golden replay checks: IPv4 and IPv6
# connections closed by either side, a refused connect, and a connect whose
# SYN is dropped (client times out after its retransmits).
import socket, subprocess, sys, time
mode = sys.argv[1]
def pair(family, host, client_closes_first):
    srv = socket.socket(family); srv.bind((host, 0)); srv.listen(16)
    port = srv.getsockname()[1]
    c = socket.socket(family); c.connect((host, port)); s, _ = srv.accept()
    if client_closes_first: c.close(); time.sleep(0.01); s.close()
    else: s.close(); time.sleep(0.01); c.close()
    srv.close()
if mode == "golden":
    for first in (True, False):
        pair(socket.AF_INET, "127.0.0.1", first)
        pair(socket.AF_INET6, "::1", first)
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        probe = socket.socket(family); probe.bind((host, 0)); port = probe.getsockname()[1]; probe.close()
        try: socket.socket(family).connect((host, port))
        except ConnectionRefusedError: pass
    subprocess.run(["sysctl", "-q", "-w", "net.ipv4.tcp_syn_retries=1"], check=True)
    subprocess.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"], check=True)
    try: socket.create_connection(("127.0.0.1", 9), timeout=10)
    except OSError: pass
else:
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096); port = srv.getsockname()[1]
    for _ in range(800):
        c = socket.socket(); c.connect(("127.0.0.1", port)); s, _ = srv.accept(); c.close(); s.close()
