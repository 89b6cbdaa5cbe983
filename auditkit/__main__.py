"""``python -m auditkit`` (and ``torchrun -m auditkit train ...``) run the CLI."""

from auditkit.cli import main

main()
