"""``python -m trialrun``: the same as the ``trialrun`` command."""

from trialrun.cli import main

main()
