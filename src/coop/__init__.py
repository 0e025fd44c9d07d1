"""Co-op Flywheel: a node for data co-ops.

Packages, with imports pointing one way only::

    governance  <-  federation
    governance  <-  eval
    governance, federation, eval  <-  node
"""

__version__ = "0.1.0"
