"""``python -m replay_buffer``: the same as the ``replay-buffer`` command."""

from replay_buffer.tools.cli import main

main()
