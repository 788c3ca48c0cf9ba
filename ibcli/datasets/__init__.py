"""Small datasets that ship with ibcli (no download, no data directory).

- :mod:`ibcli.datasets.ib12`: the 12-bit task of Shwartz-Ziv & Tishby (2017),
  packaged as ``var_u.mat``.
"""
