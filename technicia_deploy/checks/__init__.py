"""Post-deployment tests (functional, performance, security), pure of Prefect.

Each module takes a :class:`~technicia_deploy.checks.target.Target` (the
domain and the address it resolves to) and returns plain results; the tasks
in ``tasks/checks.py`` turn them into step results and artifacts.
"""
