"""An OVH API v1 emulator and the authoritative DNS server of its zone, for the sandbox.

Run as a daemon: ``python -m technicia_deploy.sandbox.ovh_emulator --state DIR --api-port P --dns-port Q``
(the ``ovh`` sandbox component does it), or in-process with ``Emulator(...).start()``.

Every request is checked against OVH's own declaration of the route's parameters
(``validation.py``, ``schemas/operations.json``) and refused with OVH's 400 as OVH would.
"""

from technicia_deploy.sandbox.ovh_emulator.auth import AppKeys, new_app_keys
from technicia_deploy.sandbox.ovh_emulator.server import ZONE, Emulator

__all__ = ["AppKeys", "Emulator", "ZONE", "new_app_keys"]
