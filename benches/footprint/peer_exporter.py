"""The peer for benches/exporter-footprint.sh: a Python prometheus_client
exporter doing the same work as aif-node-exporter at 1 Hz (8 GPUs x 17 series,
pushed to a Pushgateway every tick), as hand-rolled node scripts do today."""
import math
import socket
import sys
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

gateway, gpus, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
registry = CollectorRegistry()
labels = ["gpu", "uuid", "model"]
names = [
    "utilization_ratio", "memory_utilization_ratio", "memory_used_bytes",
    "memory_free_bytes", "memory_total_bytes", "power_watts", "power_limit_watts",
    "energy_joules", "temperature_celsius", "sm_clock_hertz", "memory_clock_hertz",
    "pcie_tx_bytes_per_second", "pcie_rx_bytes_per_second", "up", "info",
    "throttle_gpu_idle", "throttle_sw_power_cap",
]
gauges = {n: Gauge("peer_gpu_" + n, n, labels, registry=registry) for n in names}
end = time.monotonic() + seconds
tick = time.monotonic()
while time.monotonic() < end:
    t = time.time()
    for g in range(gpus):
        u = 0.5 + 0.45 * math.sin(t / 60 + g)
        for i, n in enumerate(names):
            gauges[n].labels(str(g), "SIM-%d" % g, "Simulated GPU").set(u * (i + 1))
    push_to_gateway(gateway, job="peer_gpu", grouping_key={"instance": socket.gethostname()}, registry=registry)
    tick += 1.0
    time.sleep(max(0.0, tick - time.monotonic()))
