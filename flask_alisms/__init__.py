"""Phone sign-up for Flask with SMS codes sent through Alibaba Cloud SMS."""

__version__ = "0.1.0"
