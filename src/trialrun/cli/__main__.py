"""``python -m trialrun.cli``: the same as the ``trialrun`` command."""

from trialrun.cli import main

main()
