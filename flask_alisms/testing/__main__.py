"""``python -m flask_alisms.testing``: run the Dysmsapi emulator standalone."""

from .emulator import main

main()
