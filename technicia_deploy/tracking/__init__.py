"""The tracking document: the team's hand-written deployment log, rendered live from Prefect's run history.

history.py reads the Prefect API into plain records, problems.py and render.py turn
them into the document (pure, fr/en), publish.py is what the flows call. The
contract the flows follow is docs/tracking.md.
"""
