"""Evaluation: coco-caption metrics, human agreement, the ``imgsum eval`` report.

Nothing heavy is imported here: the command line builds its parser from this package.
"""

#: The caption file ``imgsum eval`` reads by default, from the project's root (its split files lie beside it).
DEFAULT_DATA = "../shared/data/flickr8k/Flickr8k.token.txt"
