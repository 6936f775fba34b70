"""The local OVH world: VPS containers, OVH/DNS/ACME/cloud emulators, a sample application.

Product code never imports this package; it only talks to the sandbox through
the same protocols it uses against OVH and the cloud services.
"""
