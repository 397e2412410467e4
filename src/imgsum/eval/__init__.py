"""Evaluation: coco-caption metrics, human agreement, the ``imgsum eval`` report.

Nothing heavy is imported here: the command line builds its parser from this package.
"""

from __future__ import annotations

import os

#: The environment variable naming the folder that holds ``flickr8k/``: where ``imgsum eval`` looks by default.
DATA_ENV = "IMGSUM_DATA"
#: The Flickr8k caption file's place under that folder (its split files and ``images/`` lie beside it).
FLICKR8K_CAPTIONS = "flickr8k/Flickr8k.token.txt"


def default_data() -> str:
    """The caption file ``imgsum eval`` reads without ``--data``: ``$IMGSUM_DATA/flickr8k/Flickr8k.token.txt``,
    or ``flickr8k/Flickr8k.token.txt`` in the current folder when the variable is unset."""
    root = os.environ.get(DATA_ENV)
    return os.path.join(root, FLICKR8K_CAPTIONS) if root else FLICKR8K_CAPTIONS


#: :func:`default_data` as it was when imgsum was imported.
DEFAULT_DATA = default_data()
