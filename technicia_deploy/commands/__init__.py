"""Pure command builders and fact parsers for the server steps.

Every step follows the same three-part pattern, with no SSH and no I/O here:

1. a *fact command* (one shell script, one round trip) that prints what the
   server currently looks like, in named sections;
2. a *parser* from that output to a frozen dataclass (the facts);
3. an *operation*: ``facts + wanted state -> list[str]`` of the commands still
   needed. An empty list means the server is already right ("unchanged").

The executor (technicia_deploy/connection.py, owned by the lead) runs every
command, fact scripts included, as root through ``sudo bash -c``. See
docs/commands.md.
"""
