"""One local daemon that speaks the four cloud APIs TechnicIA calls.

Anthropic (``/v1/models``, ``/v1/messages``, ``/v1/messages/count_tokens``),
VoyageAI (``/v1/embeddings``), Google Vision (``/v1/images:annotate``) and
Document AI (``/v1/projects/{p}/locations/{l}/processors/{id}:process``), with
each service's own authentication and error body shapes, so the real SDKs run
their real code paths against it.

It knows no secret: API keys are registered by their SHA-256, service
accounts by their public key. Tests inject faults (status codes, retry-after,
delays/hangs) through ``/_admin/faults``.

Run it with ``python -m technicia_deploy.sandbox.cloud_emulator --config FILE --port N``
or, in a test, ``server.run_in_thread(config)``.
"""
