"""``python -m flask_alisms.testing``: run the Dysmsapi emulator standalone."""

from .cli import main

main()
