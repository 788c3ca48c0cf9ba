"""ibcli: information-plane analysis of neural networks (train -> mi -> plot)."""

__version__ = "0.1.0"
