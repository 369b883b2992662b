"""The flows: sending and checking codes, limits, and the account actions built on them.

Each action has one flow here, shared by the JSON API, the HTML pages and the host's own code.
"""
