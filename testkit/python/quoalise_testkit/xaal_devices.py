"""Real xaal-lib devices for the xAAL end-to-end test: a power meter, a thermometer and a lamp
(a schema the component does not map), driven by JSON lines on stdin.

Run by xaal_bus.py (beside this file) with XAAL_CONF_DIR pointing at an xaal.ini (xaal-lib reads it at
import). Prints one JSON line when ready, `{"ready": true, "devices": {name: uuid}}`, then
answers each command with one JSON line:

    {"cmd": "set", "dev": "pm", "attrs": {"power": 120}}  -> {"ok": "set", "sent": <time.monotonic()>}
    {"cmd": "stop", "dev": "thermo"}                      -> {"ok": "stop"}  (stops announcing)
    {"cmd": "quit"}

`sent` is taken just before the attributes_change datagram leaves, for latency measurements.
"""

from __future__ import annotations

import json
import select
import sys
import time

from xaal.lib import Engine, tools
from xaal.schemas import devices as schemas


def make_devices() -> dict:
    pm = schemas.powermeter(tools.get_random_uuid())
    pm.vendor_id = "Quoalise-e2e"
    pm.product_id = "PM-1"
    pm.info = "kitchen meter"
    pm.url = "http://example.org/pm-1"
    thermo = schemas.thermometer(tools.get_random_uuid())
    thermo.vendor_id = "Quoalise-e2e"
    thermo.product_id = "TH-1"
    thermo.info = "living room"
    lamp = schemas.lamp(tools.get_random_uuid())
    lamp.vendor_id = "Quoalise-e2e"
    lamp.product_id = "LAMP-1"
    return {"pm": pm, "thermo": thermo, "lamp": lamp}


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    devices = make_devices()
    engine = Engine()
    engine.add_devices(list(devices.values()))
    engine.start()
    reply({"ready": True, "devices": {name: str(d.address) for name, d in devices.items()}})
    stdin = sys.stdin
    while True:
        engine.loop()  # blocks about 20 ms when the bus is quiet
        while select.select([stdin], [], [], 0)[0]:
            line = stdin.readline()
            if not line:
                return
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                return
            dev = devices[cmd["dev"]]
            if cmd["cmd"] == "set":
                for name, value in cmd["attrs"].items():
                    dev.attributes[name] = value
                sent = time.monotonic()
                engine.process_attributes_change()
                engine.process_tx_msg()
                reply({"ok": "set", "sent": sent})
            elif cmd["cmd"] == "stop":
                engine.remove_device(dev)
                reply({"ok": "stop"})
            else:
                reply({"error": f"unknown command {cmd['cmd']!r}"})


if __name__ == "__main__":
    main()
